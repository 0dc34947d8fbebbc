"""A streaming, reproducible .tar.gz writer: fixed owners, modes and times, sorted entries, gzip mtime 0."""

from __future__ import annotations

import struct
import tarfile

from modeldeploy.archives.deflate import DEFAULT_LEVEL, ChunkedDeflater
from modeldeploy.archives.streams import HashingWriter, Readable, chunks_of

_BLOCK = 512
_RECORD = 20 * _BLOCK
# gzip member header: magic, deflate, no flags, mtime 0 (none), no extra flags, OS 255 (unknown).
_GZIP_HEADER = b"\x1f\x8b\x08\x00" + struct.pack("<I", 0) + b"\x00\xff"


class TarGzWriter:
    """Writes a gzip-compressed POSIX (pax) tar archive to a HashingWriter."""

    def __init__(
        self, out: HashingWriter, *, epoch: int, deflate_level: int = DEFAULT_LEVEL, workers: int | None = None
    ) -> None:
        self._out = out
        self._epoch = max(epoch, 0)
        out.write(_GZIP_HEADER)
        self._deflater = ChunkedDeflater(out, level=deflate_level, workers=workers)
        self._position = 0

    def _write(self, data: bytes | memoryview) -> None:
        self._deflater.write(data)
        self._position += len(data)

    def _header(self, name: str, size: int, *, directory: bool) -> bytes:
        info = tarfile.TarInfo(name)
        info.type = tarfile.DIRTYPE if directory else tarfile.REGTYPE
        info.mode = 0o755 if directory else 0o644
        info.size = 0 if directory else size
        info.mtime = self._epoch
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "strict")

    def add_directory(self, name: str) -> None:
        """A directory entry (name without trailing slash)."""
        self._write(self._header(name, 0, directory=True))

    def add_file(self, name: str, source: Readable, size: int, *, input_name: str) -> None:
        """A regular file whose size bytes come from source."""
        self._write(self._header(name, size, directory=False))
        for view in chunks_of(source, size, input_name=input_name):
            self._write(view)
        self._pad()

    def add_bytes(self, name: str, data: bytes) -> None:
        """A regular file from memory (the manifest)."""
        self._write(self._header(name, len(data), directory=False))
        self._write(data)
        self._pad()

    def _pad(self) -> None:
        remainder = self._position % _BLOCK
        if remainder:
            self._write(bytes(_BLOCK - remainder))

    def close(self) -> None:
        """End-of-archive blocks, record padding (as tar does), then the gzip trailer."""
        self._write(bytes(2 * _BLOCK))
        remainder = self._position % _RECORD
        if remainder:
            self._write(bytes(_RECORD - remainder))
        self._deflater.finish()
        self._out.write(struct.pack("<II", self._deflater.crc32, self._deflater.uncompressed_bytes & 0xFFFFFFFF))

    def abort(self) -> None:
        """Stop the compression threads after a failure."""
        self._deflater.close()
