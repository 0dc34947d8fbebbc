"""Recognise pickle-based PyTorch weights without loading them (nothing is ever unpickled here)."""

from __future__ import annotations

import re
import struct
import zipfile
from typing import Literal

WeightsKind = Literal["torchscript", "torch-save-zip", "pickle", "safetensors", "other"]

# Suffixes whose files PyTorch code usually torch.load()s, i.e. unpickles.
WEIGHT_SUFFIXES = (".pt", ".pth", ".bin", ".pkl", ".pickle", ".ckpt")
_TORCHSCRIPT_MEMBER = re.compile(r"^[^/]+/(code/|constants\.pkl$)")
_PICKLE_MEMBER = re.compile(r"^[^/]+/data\.pkl$")
_ZIP_MAGIC = b"PK\x03\x04"


def classify(path: str) -> WeightsKind:
    """What a weights file is, from its first bytes and (for zips) its central directory only."""
    with open(path, "rb") as handle:
        head = handle.read(16)
    if head.startswith(_ZIP_MAGIC):
        try:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
        except zipfile.BadZipFile:
            return "other"
        if any(_TORCHSCRIPT_MEMBER.match(name) for name in names):
            return "torchscript"
        if any(_PICKLE_MEMBER.match(name) for name in names):
            return "torch-save-zip"
        return "other"
    # Pickle protocols 2..5 start with PROTO (0x80) and the protocol number.
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return "pickle"
    if len(head) >= 9:
        (header_length,) = struct.unpack("<Q", head[:8])
        if 0 < header_length < (100 << 20) and head[8:9] == b"{":
            return "safetensors"
    return "other"


def pickle_warning(input_name: str, archive_name: str, kind: WeightsKind) -> str | None:
    """The warning for a pickle-based file, or None when the file is not one."""
    if kind not in ("pickle", "torch-save-zip"):
        return None
    what = "a torch.save() zip with pickled data" if kind == "torch-save-zip" else "a pickle"
    return (
        f"{input_name}: {archive_name} is {what}, not TorchScript; it was packaged but never loaded. "
        "Loading it with torch.load() can run arbitrary code: prefer TorchScript (torch.jit.save) "
        "or safetensors."
    )


def is_weights_name(archive_name: str) -> bool:
    """Whether an entry name has a suffix of files that are usually unpickled."""
    return archive_name.lower().endswith(WEIGHT_SUFFIXES)
