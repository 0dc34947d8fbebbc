"""Typed access to the body: `Reader` reads one mapping with its field path, and every violation is a
`SpecError` naming the field, the value and the rule."""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar


class SpecError(ValueError):
    """A spec violates a rule: names the field, the offending value and the rule or bound."""

    def __init__(self, field: str, value: object, rule: str) -> None:
        self.field = field
        self.value = value
        self.rule = rule
        super().__init__(f"{field}: {value!r} {rule}")


_T = TypeVar("_T")
_E = TypeVar("_E", bound=enum.StrEnum)


class Reader:
    """Typed access to one mapping of the body, with the field path for error messages."""

    def __init__(self, data: object, path: str) -> None:
        if data is None:
            data = {}
        if not isinstance(data, Mapping):
            raise SpecError(path, data, "must be an object")
        self.data: Mapping[str, Any] = data
        self.path = path

    def at(self, key: str) -> str:
        return f"{self.path}.{key}"

    def has(self, key: str) -> bool:
        return self.data.get(key) is not None

    def child(self, key: str) -> Reader:
        return Reader(self.data.get(key), self.at(key))

    def _typed(self, key: str, kind: type[_T], default: _T | None, what: str) -> _T:
        value = self.data.get(key)
        if value is None:
            if default is None:
                raise SpecError(self.at(key), None, "is required")
            return default
        # bool is an int in Python; a YAML `true` is never a valid count
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise SpecError(self.at(key), value, f"must be {what}")
        return value

    def string(self, key: str, default: str | None = None, *, max_length: int = 1024) -> str:
        value = self._typed(key, str, default, "a string")
        if len(value) > max_length:
            raise SpecError(self.at(key), value, f"must be at most {max_length} characters")
        return value

    def choice(self, key: str, kind: type[_E], default: _E | None = None, *, max_length: int = 64) -> _E:
        """One of the values of the enum `kind`; anything else is refused with the values allowed."""
        text = self.string(key, default.value if default is not None else None, max_length=max_length)
        try:
            return kind(text)
        except ValueError:
            allowed = ", ".join(member.value for member in kind)
            raise SpecError(self.at(key), text, f"must be one of {allowed}") from None

    def optional_string(self, key: str, *, max_length: int = 1024) -> str | None:
        return self.string(key, max_length=max_length) if self.has(key) else None

    def integer(self, key: str, default: int | None = None, *, minimum: int, maximum: int) -> int:
        value = self._typed(key, int, default, "an integer")
        if not minimum <= value <= maximum:
            raise SpecError(self.at(key), value, f"must be within {minimum}..{maximum}")
        return value

    def boolean(self, key: str, default: bool) -> bool:
        return self._typed(key, bool, default, "true or false")

    def number(self, key: str) -> float | None:
        value = self.data.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise SpecError(self.at(key), value, "must be a number")
        return float(value)

    def items(self, key: str, *, max_items: int) -> list[Reader] | None:
        """The list's items, or None when the key is absent."""
        value = self.data.get(key)
        if value is None:
            return None
        if not isinstance(value, Sequence) or isinstance(value, str):
            raise SpecError(self.at(key), value, "must be a list")
        if len(value) > max_items:
            raise SpecError(self.at(key), f"{len(value)} items", f"must have at most {max_items} items")
        return [Reader(item, f"{self.at(key)}[{i}]") for i, item in enumerate(value)]


def matching(reader: Reader, key: str, pattern: re.Pattern[str], rule: str, default: str | None = None,
              *, max_length: int = 253) -> str:
    value = reader.string(key, default, max_length=max_length)
    if not pattern.match(value):
        raise SpecError(reader.at(key), value, rule)
    return value


def one_of(keys: Sequence[str]) -> str:
    """The keys as a choice in words: `a or b`, `a, b or c`."""
    return keys[0] if len(keys) == 1 else f"{', '.join(keys[:-1])} or {keys[-1]}"
