"""What every room of the node agent shares: the object type, timestamps, the start error."""

from __future__ import annotations

import datetime
from typing import Any

Obj = dict[str, Any]


def now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class StartError(Exception):
    """A container cannot be created; reason and message go to its waiting state."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
