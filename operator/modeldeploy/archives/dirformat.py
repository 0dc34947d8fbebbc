"""The no-archive format: the archive's files in a directory, with fixed modes and times.

Its sha256 is taken over a canonical listing, the output of `sha256sum` over the sorted relative
paths: sha256("<sha256 hex>  <path>\\n" for each file, sorted by path). A shell can check it with
    (cd DIR && find . -type f | sed 's|^\\./||' | LC_ALL=C sort | xargs -d '\\n' sha256sum) | sha256sum
"""

from __future__ import annotations

import hashlib
import os

from modeldeploy.archives.errors import InputChanged, IntegrityError
from modeldeploy.archives.streams import BytesReader, FileSink, HashingWriter, Readable


def listing_digest(files: dict[str, str]) -> str:
    """sha256 of the sha256sum-style listing of {relative path: sha256}."""
    listing = "".join(f"{files[name]}  {name}\n" for name in sorted(files))
    return hashlib.sha256(listing.encode("utf-8")).hexdigest()


class DirectoryWriter:
    """Writes files below a root directory; every file is hashed while written."""

    def __init__(self, root: str, *, epoch: int, durable: bool = True) -> None:
        self._root = root
        self._epoch = max(epoch, 0)
        self._durable = durable
        self._files: dict[str, str] = {}
        self._directories: set[str] = set()
        self.bytes_written = 0

    def add_file(self, name: str, source: Readable, size: int, *, sha256: str | None, input_name: str) -> None:
        """Write name from size bytes of source; with sha256, refuse content that differs from it."""
        path = os.path.join(self._root, *name.split("/"))
        self._make_parents(name)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        try:
            os.fchmod(fd, 0o644)
            writer = HashingWriter(FileSink(fd))
            writer.write_from(source, size, input_name=input_name)
            if self._durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        digest = writer.hexdigest()
        if sha256 is not None and digest != sha256:
            raise InputChanged(input_name, "its sha256 differs from the one computed before writing")
        self._files[name] = digest
        self.bytes_written += size

    def add_bytes(self, name: str, data: bytes) -> None:
        """Write a small file from memory (the manifest)."""
        self.add_file(name, BytesReader(data), len(data), sha256=None, input_name=name)

    def _make_parents(self, name: str) -> None:
        parts = name.split("/")[:-1]
        for depth in range(1, len(parts) + 1):
            relative = "/".join(parts[:depth])
            if relative not in self._directories:
                path = os.path.join(self._root, *parts[:depth])
                os.mkdir(path)
                os.chmod(path, 0o755)
                self._directories.add(relative)

    def close(self) -> str:
        """Fix every time to the epoch (deepest first) and return the listing digest."""
        times = (self._epoch, self._epoch)
        for name in self._files:
            os.utime(os.path.join(self._root, *name.split("/")), times, follow_symlinks=False)
        for relative in sorted(self._directories, key=lambda item: item.count("/"), reverse=True):
            os.utime(os.path.join(self._root, *relative.split("/")), times, follow_symlinks=False)
        os.utime(self._root, times)
        return listing_digest(self._files)


def directory_digest(root: str) -> tuple[str, int]:
    """(listing digest, total bytes) of an existing directory; symlinks and special files are refused."""
    files: dict[str, str] = {}
    total = 0

    def walk(directory: str, prefix: str) -> None:
        nonlocal total
        with os.scandir(directory) as iterator:
            entries = sorted(iterator, key=lambda entry: entry.name)
        for entry in entries:
            name = prefix + entry.name
            if entry.is_symlink():
                raise IntegrityError(f"{root}: {name} is a symlink; an artifact holds regular files only")
            if entry.is_dir(follow_symlinks=False):
                walk(entry.path, name + "/")
            elif entry.is_file(follow_symlinks=False):
                sha = hashlib.sha256()
                with open(entry.path, "rb", buffering=0) as handle:
                    while chunk := handle.read(4 << 20):
                        sha.update(chunk)
                        total += len(chunk)
                files[name] = sha.hexdigest()
            else:
                raise IntegrityError(f"{root}: {name} is not a regular file")

    walk(root, "")
    return listing_digest(files), total
