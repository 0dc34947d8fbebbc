"""Kubernetes quantities and Go durations as the spec writes them."""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal

from modeldeploy.api.spec.reader import SpecError

_GO_DURATION = re.compile(r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$")
_GO_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ns|us|µs|ms|s|m|h)")
QUANTITY = re.compile(
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)
_DURATION_UNITS = {
    "ns": timedelta(microseconds=0.001),
    "us": timedelta(microseconds=1),
    "µs": timedelta(microseconds=1),
    "ms": timedelta(milliseconds=1),
    "s": timedelta(seconds=1),
    "m": timedelta(minutes=1),
    "h": timedelta(hours=1),
}


_QUANTITY_SUFFIXES = {
    "Ki": Decimal(2) ** 10, "Mi": Decimal(2) ** 20, "Gi": Decimal(2) ** 30, "Ti": Decimal(2) ** 40,
    "Pi": Decimal(2) ** 50, "Ei": Decimal(2) ** 60,
    "n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"), "": Decimal(1),
    "k": Decimal("1e3"), "M": Decimal("1e6"), "G": Decimal("1e9"), "T": Decimal("1e12"),
    "P": Decimal("1e15"), "E": Decimal("1e18"),
}


def quantity_value(text: str) -> Decimal:
    """The value of a Kubernetes quantity such as "500m", "2Gi" or "1e3" (format checked by the caller)."""
    for suffix in ("Ki", "Mi", "Gi", "Ti", "Pi", "Ei", "n", "u", "m", "k", "M", "G", "T", "P", "E"):
        if text.endswith(suffix) and not text.endswith(("e" + suffix, "E" + suffix)):
            return Decimal(text[: -len(suffix)]) * _QUANTITY_SUFFIXES[suffix]
    return Decimal(text)


def parse_go_duration(text: str, field: str = "duration") -> timedelta:
    """Parse a Go duration such as "30s", "1.5h" or "1h30m"; raise SpecError for anything else."""
    if not _GO_DURATION.match(text):
        raise SpecError(field, text, "is not a duration (for example 30s, 5m, 1h30m)")
    total = timedelta()
    for amount, unit in _GO_DURATION_PART.findall(text):
        total += float(amount) * _DURATION_UNITS[unit]
    return total
