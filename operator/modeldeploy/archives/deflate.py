"""Deterministic deflate on several threads: fixed-size chunks compressed independently, in order.

Each chunk is compressed by its own compressor and ends with a sync flush (a byte-aligned empty stored
block), so the concatenation is one valid deflate stream; a final empty block closes it. The output
depends only on the data, the level, the chunk size and the zlib version, never on the number of
threads, so it stays reproducible while using every core (the way pigz does, without dictionaries).
"""

from __future__ import annotations

import os
import zlib
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Protocol

from modeldeploy.archives.streams import Bytes

DEFLATE_CHUNK_BYTES = 1 << 20
# The fastest level: on model weights (dense floats) higher levels gain a few percent at 2-5x the time.
DEFAULT_LEVEL = 1
# A fresh compressor with no input, finished: one empty final block ("\x03\x00").
_FINAL_BLOCK = zlib.compressobj(DEFAULT_LEVEL, zlib.DEFLATED, -zlib.MAX_WBITS).flush(zlib.Z_FINISH)


class _Writer(Protocol):
    def write(self, data: Bytes, /) -> int: ...


def _compress_chunk(chunk: bytes, level: int) -> bytes:
    compressor = zlib.compressobj(level, zlib.DEFLATED, -zlib.MAX_WBITS)
    return compressor.compress(chunk) + compressor.flush(zlib.Z_SYNC_FLUSH)


def default_workers() -> int:
    """Threads for compression: the CPUs this process may use, at most 8."""
    try:
        available = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        available = os.cpu_count() or 1
    return max(1, min(8, available))


class ChunkedDeflater:
    """Feed uncompressed bytes in; a raw deflate stream comes out to `out`, in order.

    Also keeps the crc32 and the size of the uncompressed data (gzip's trailer needs both).
    """

    def __init__(self, out: _Writer, *, level: int = DEFAULT_LEVEL, workers: int | None = None) -> None:
        self._out = out
        self._level = level
        self._workers = workers or default_workers()
        self._pool: ThreadPoolExecutor | None = None
        self._pending: deque[Future[bytes]] = deque()
        self._buffer = bytearray()
        self.crc32 = 0
        self.uncompressed_bytes = 0
        self.compressed_bytes = 0

    def write(self, data: Bytes, /) -> int:
        """Accept uncompressed bytes (any amount); full chunks go to the compression threads."""
        view = memoryview(data).cast("B")
        self.crc32 = zlib.crc32(view, self.crc32)
        self.uncompressed_bytes += len(view)
        if not self._buffer and len(view) == DEFLATE_CHUNK_BYTES:
            self._submit(bytes(view))
            return len(view)
        self._buffer += view
        while len(self._buffer) >= DEFLATE_CHUNK_BYTES:
            chunk = bytes(self._buffer[:DEFLATE_CHUNK_BYTES])
            del self._buffer[:DEFLATE_CHUNK_BYTES]
            self._submit(chunk)
        return len(view)

    def _submit(self, chunk: bytes) -> None:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=self._workers, thread_name_prefix="archive-deflate")
        self._pending.append(self._pool.submit(_compress_chunk, chunk, self._level))
        while len(self._pending) > self._workers + 1:
            self._emit(self._pending.popleft().result())

    def _emit(self, compressed: bytes) -> None:
        self._out.write(compressed)
        self.compressed_bytes += len(compressed)

    def finish(self) -> None:
        """Compress what is left, write every pending chunk and close the deflate stream."""
        try:
            if self._buffer and self._pool is None:
                # A small entry: no thread is worth starting.
                self._emit(_compress_chunk(bytes(self._buffer), self._level))
            elif self._buffer:
                self._submit(bytes(self._buffer))
            self._buffer.clear()
            while self._pending:
                self._emit(self._pending.popleft().result())
            self._emit(_FINAL_BLOCK)
        finally:
            self.close()

    def close(self) -> None:
        """Stop the compression threads (also after a failure)."""
        for future in self._pending:
            future.cancel()
        self._pending.clear()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
