"""A streaming, reproducible ZIP writer that TorchServe's Java reader accepts.

Entries are written in the order given (the caller sorts them), with one fixed timestamp, fixed
permissions (0644) and no extra metadata. Stored entries carry their crc32 and size in the local
header (java.util.zip.ZipInputStream rejects a data descriptor on a stored entry), so the crc is
computed beforehand by the scan. Deflated entries use a data descriptor, so nothing is ever seeked
back: the output can stream to any sink (a file, an S3 multipart upload). ZIP64 records are
written only where a size or an offset needs them.
"""

from __future__ import annotations

import struct
import time
import zlib
from dataclasses import dataclass

from modeldeploy.archives.deflate import DEFAULT_LEVEL, ChunkedDeflater
from modeldeploy.archives.errors import InputChanged
from modeldeploy.archives.streams import BytesReader, HashingWriter, Readable, chunks_of

_LOCAL = 0x04034B50
_CENTRAL = 0x02014B50
_DESCRIPTOR = 0x08074B50
_END = 0x06054B50
_END64 = 0x06064B50
_LOCATOR64 = 0x07064B50
_ZIP64_EXTRA = 0x0001
_MAX32 = 0xFFFFFFFF
_MAX16 = 0xFFFF
_STORED = 0
_DEFLATED = 8
_FLAG_DESCRIPTOR = 0x08
_VERSION_DEFAULT = 20
_VERSION_ZIP64 = 45
_MADE_BY_UNIX = 3 << 8
_FILE_ATTRIBUTES = (0o100644 & 0xFFFF) << 16
# DOS dates start in 1980: earlier epochs are clamped to 1980-01-01 00:00:00.
_DOS_EPOCH = 315532800


def dos_timestamp(epoch: int) -> tuple[int, int]:
    """(time, date) in MS-DOS format for a Unix time (UTC), clamped to 1980..2107."""
    moment = time.gmtime(min(max(epoch, _DOS_EPOCH), 4354819199))
    dos_time = (moment.tm_hour << 11) | (moment.tm_min << 5) | (moment.tm_sec // 2)
    dos_date = ((moment.tm_year - 1980) << 9) | (moment.tm_mon << 5) | moment.tm_mday
    return dos_time, dos_date


@dataclass(frozen=True)
class _Entry:
    name: bytes
    method: int
    flags: int
    crc32: int
    compressed: int
    size: int
    offset: int


class ZipWriter:
    """Writes a ZIP archive to a HashingWriter, one entry after the other."""

    def __init__(
        self, out: HashingWriter, *, epoch: int, deflate_level: int = DEFAULT_LEVEL, workers: int | None = None
    ) -> None:
        self._out = out
        self._time, self._date = dos_timestamp(epoch)
        self._level = deflate_level
        self._workers = workers
        self._entries: list[_Entry] = []

    def add_stored(self, name: str, source: Readable, size: int, crc32: int, *, input_name: str) -> None:
        """Store size bytes of source uncompressed; crc32 must be the crc of exactly those bytes."""
        encoded = name.encode("ascii")
        offset = self._out.bytes_written
        zip64 = size >= _MAX32
        extra = struct.pack("<HHQQ", _ZIP64_EXTRA, 16, size, size) if zip64 else b""
        header_size = _MAX32 if zip64 else size
        self._out.write(
            struct.pack(
                "<IHHHHHIIIHH",
                _LOCAL,
                _VERSION_ZIP64 if zip64 else _VERSION_DEFAULT,
                0,
                _STORED,
                self._time,
                self._date,
                crc32,
                header_size,
                header_size,
                len(encoded),
                len(extra),
            )
            + encoded
            + extra
        )
        self._out.write_from(source, size, input_name=input_name)
        self._entries.append(_Entry(encoded, _STORED, 0, crc32, size, size, offset))

    def add_stored_bytes(self, name: str, data: bytes) -> None:
        """Store a small in-memory entry (the manifest)."""
        self.add_stored(name, BytesReader(data), len(data), zlib.crc32(data), input_name=name)

    def add_deflated(self, name: str, source: Readable, size: int, crc32: int, *, input_name: str) -> None:
        """Deflate size bytes of source; crc and sizes follow the data in a descriptor."""
        encoded = name.encode("ascii")
        offset = self._out.bytes_written
        self._out.write(
            struct.pack(
                "<IHHHHHIIIHH",
                _LOCAL,
                _VERSION_DEFAULT,
                _FLAG_DESCRIPTOR,
                _DEFLATED,
                self._time,
                self._date,
                0,
                0,
                0,
                len(encoded),
                0,
            )
            + encoded
        )
        deflater = ChunkedDeflater(self._out, level=self._level, workers=self._workers)
        try:
            for view in chunks_of(source, size, input_name=input_name):
                deflater.write(view)
            deflater.finish()
        finally:
            deflater.close()
        if deflater.crc32 != crc32:
            raise InputChanged(input_name, "its crc32 differs from the one computed before writing")
        compressed = deflater.compressed_bytes
        # java.util.zip.ZipInputStream reads 8-byte descriptor sizes exactly when a size exceeds 32 bits.
        if compressed > _MAX32 or size > _MAX32:
            self._out.write(struct.pack("<IIQQ", _DESCRIPTOR, crc32, compressed, size))
        else:
            self._out.write(struct.pack("<IIII", _DESCRIPTOR, crc32, compressed, size))
        self._entries.append(_Entry(encoded, _DEFLATED, _FLAG_DESCRIPTOR, crc32, compressed, size, offset))

    def add_deflated_bytes(self, name: str, data: bytes) -> None:
        """Deflate a small in-memory entry."""
        self.add_deflated(name, BytesReader(data), len(data), zlib.crc32(data), input_name=name)

    def close(self) -> None:
        """Write the central directory and the end records."""
        start = self._out.bytes_written
        for entry in self._entries:
            values: list[int] = []
            size = entry.size
            compressed = entry.compressed
            offset = entry.offset
            if size >= _MAX32:
                values.append(size)
                size = _MAX32
            if compressed >= _MAX32:
                values.append(compressed)
                compressed = _MAX32
            if offset >= _MAX32:
                values.append(offset)
                offset = _MAX32
            extra = struct.pack(f"<HH{len(values)}Q", _ZIP64_EXTRA, 8 * len(values), *values) if values else b""
            version = _VERSION_ZIP64 if values else _VERSION_DEFAULT
            self._out.write(
                struct.pack(
                    "<IHHHHHHIIIHHHHHII",
                    _CENTRAL,
                    _MADE_BY_UNIX | version,
                    version,
                    entry.flags,
                    entry.method,
                    self._time,
                    self._date,
                    entry.crc32,
                    compressed,
                    size,
                    len(entry.name),
                    len(extra),
                    0,
                    0,
                    0,
                    _FILE_ATTRIBUTES,
                    offset,
                )
                + entry.name
                + extra
            )
        end = self._out.bytes_written
        count = len(self._entries)
        directory_size = end - start
        if count >= _MAX16 or directory_size >= _MAX32 or start >= _MAX32:
            self._out.write(
                struct.pack(
                    "<IQHHIIQQQQ",
                    _END64,
                    44,
                    _MADE_BY_UNIX | _VERSION_ZIP64,
                    _VERSION_ZIP64,
                    0,
                    0,
                    count,
                    count,
                    directory_size,
                    start,
                )
            )
            self._out.write(struct.pack("<IIQI", _LOCATOR64, 0, end, 1))
            self._out.write(
                struct.pack(
                    "<IHHHHIIH",
                    _END,
                    0,
                    0,
                    min(count, _MAX16),
                    min(count, _MAX16),
                    min(directory_size, _MAX32),
                    min(start, _MAX32),
                    0,
                )
            )
        else:
            self._out.write(struct.pack("<IHHHHIIH", _END, 0, 0, count, count, directory_size, start, 0))
