"""Streaming building blocks: a hashing writer, a two-thread scan (sha256 + crc32) and a pipelined copy.

Every byte of a source is read in fixed-size chunks; nothing is read whole into memory. hashlib, zlib
and file I/O release the GIL on large buffers, so the pipelines below overlap hashing with reading and
writing on separate threads.
"""

from __future__ import annotations

import hashlib
import os
import queue
import threading
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

from modeldeploy.archives.errors import BuildFailed, InputChanged, SizeLimitExceeded

# 256 KiB: a buffer that stays in the CPU cache between read, hash and write (4 MiB is twice as slow).
CHUNK_BYTES = 256 << 10
PIPELINE_BUFFERS = 4

Bytes = bytes | bytearray | memoryview


class Readable(Protocol):
    """A binary source read in chunks (an open file, an HTTP response, an S3 body)."""

    def readinto(self, buffer: memoryview, /) -> int | None: ...

    def read(self, size: int = -1, /) -> bytes: ...


class Sink(Protocol):
    """Where artifact bytes go: a local file, an S3 multipart upload, ..."""

    def write(self, data: Bytes, /) -> int: ...


class FileSink:
    """A sink over an OS file descriptor that writes every byte (retrying short writes)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def write(self, data: Bytes, /) -> int:
        """Write all of data to the descriptor."""
        view = memoryview(data).cast("B")
        total = len(view)
        while view:
            written = os.write(self.fd, view)
            view = view[written:]
        return total


class HashingWriter:
    """Wraps a sink: every byte written through it is counted and sha256-hashed on the way."""

    def __init__(self, sink: Sink) -> None:
        self._sink = sink
        self._sha = hashlib.sha256()
        self.bytes_written = 0

    def write(self, data: Bytes, /) -> int:
        """Hash, count and forward data to the sink."""
        size = len(memoryview(data).cast("B"))
        self._sha.update(data)
        self._sink.write(data)
        self.bytes_written += size
        return size

    def write_from(self, source: Readable, size: int, *, input_name: str) -> None:
        """Copy exactly size bytes from source: this thread reads and hashes, a second thread writes."""
        if size <= CHUNK_BYTES:
            data = source.read(size)
            if len(data) != size:
                raise InputChanged(input_name, f"read {len(data)} of {size} bytes: the file shrank while writing")
            self.write(data)
            return
        free: queue.Queue[bytearray] = queue.Queue()
        for _ in range(PIPELINE_BUFFERS):
            free.put(bytearray(CHUNK_BYTES))
        work: queue.Queue[tuple[bytearray, int] | None] = queue.Queue()
        failure: list[BaseException] = []

        def writer() -> None:
            while (item := work.get()) is not None:
                buffer, length = item
                try:
                    if not failure:
                        self._sink.write(memoryview(buffer)[:length])
                except BaseException as error:  # surfaced in the reading thread
                    failure.append(error)
                free.put(buffer)

        thread = threading.Thread(target=writer, name="archive-writer", daemon=True)
        thread.start()
        remaining = size
        try:
            while remaining > 0 and not failure:
                buffer = free.get()
                view = memoryview(buffer)[: min(CHUNK_BYTES, remaining)]
                got = read_exactly(source, view)
                if got != len(view):
                    free.put(buffer)
                    raise InputChanged(
                        input_name, f"read {size - remaining + got} of {size} bytes: the file shrank while writing"
                    )
                self._sha.update(view)
                self.bytes_written += got
                remaining -= got
                work.put((buffer, got))
        finally:
            work.put(None)
            thread.join()
        if failure:
            raise BuildFailed(f"writing the artifact failed: {failure[0]}") from failure[0]

    def hexdigest(self) -> str:
        """The sha256 of everything written so far."""
        return self._sha.hexdigest()


def chunks_of(source: Readable, size: int, *, input_name: str) -> Iterator[memoryview]:
    """Exactly size bytes of source in CHUNK_BYTES views of one reused buffer; refuses a file that shrank."""
    buffer = bytearray(CHUNK_BYTES)
    remaining = size
    while remaining > 0:
        view = memoryview(buffer)[: min(CHUNK_BYTES, remaining)]
        got = read_exactly(source, view)
        if got != len(view):
            raise InputChanged(input_name, f"read {size - remaining + got} of {size} bytes")
        yield view
        remaining -= got


def read_exactly(source: Readable, view: memoryview) -> int:
    """Fill view from source unless it ends first; return the number of bytes read."""
    got = 0
    while got < len(view):
        count = source.readinto(view[got:])
        if not count:
            break
        got += count
    return got


@dataclass(frozen=True)
class Scan:
    """What one pass over a source learns: its size, sha256 and crc32."""

    size: int
    sha256: str
    crc32: int


def scan(
    read_into: Callable[[memoryview], int],
    *,
    copy_to: Sink | None = None,
    max_bytes: int | None = None,
    input_name: str = "input",
    value: str = "",
) -> Scan:
    """Read a stream to its end, computing sha256 here and crc32 on a second thread (overlapped).

    read_into fills a buffer and returns the count (0 at the end). With copy_to, every chunk is also
    written there (a download into the staging area). max_bytes refuses a stream that grows past it.
    """
    sha = hashlib.sha256()
    crc = 0
    size = 0
    buffers = [bytearray(CHUNK_BYTES), bytearray(CHUNK_BYTES)]
    pending: Future[int] | None = None
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="archive-crc") as pool:
        index = 0
        while True:
            buffer = buffers[index % 2]
            index += 1
            view = memoryview(buffer)
            count = read_into(view)
            if not count:
                break
            size += count
            if max_bytes is not None and size > max_bytes:
                raise SizeLimitExceeded(input_name, value, f"size exceeds the per-file limit of {max_bytes} bytes")
            chunk = view[:count]
            if pending is not None:
                crc = pending.result()
            pending = pool.submit(zlib.crc32, chunk, crc)
            sha.update(chunk)
            if copy_to is not None:
                copy_to.write(chunk)
        if pending is not None:
            crc = pending.result()
    return Scan(size=size, sha256=sha.hexdigest(), crc32=crc)


def scan_file(
    source: Readable,
    *,
    copy_to: Sink | None = None,
    max_bytes: int | None = None,
    input_name: str = "input",
    value: str = "",
) -> Scan:
    """scan() over an open binary file or stream."""

    def read_into(view: memoryview) -> int:
        return source.readinto(view) or 0

    return scan(read_into, copy_to=copy_to, max_bytes=max_bytes, input_name=input_name, value=value)


class BytesReader:
    """A Readable over bytes in memory."""

    def __init__(self, data: bytes) -> None:
        self._view = memoryview(data)
        self._position = 0

    def readinto(self, buffer: memoryview, /) -> int:
        count = min(len(buffer), len(self._view) - self._position)
        buffer[:count] = self._view[self._position : self._position + count]
        self._position += count
        return count

    def read(self, size: int = -1, /) -> bytes:
        end = len(self._view) if size < 0 else min(len(self._view), self._position + size)
        data = bytes(self._view[self._position : end])
        self._position = end
        return data
