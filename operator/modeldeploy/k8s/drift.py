"""Whether a live child still holds what we render: the fields we own, compared after the API server's defaults.

Server-side apply makes us the owner of exactly the fields we send. A hand edit of one of them
(`kubectl set image`, `kubectl edit` removing a securityContext, `kubectl scale`) changes the live
value and leaves our applied-hash annotation as it was, so the hash alone cannot see it. `drifted`
walks what we render and reads the same paths in the live object:

- fields the API server adds (defaults such as `protocol`, `scheme`, `clusterIP`, `creationTimestamp`)
  are not ours and are not looked at;
- lists of named items (containers, env, volumes, ports, ownerReferences) are matched by name, so an
  item another manager added is left alone (an apply would not remove it either); other lists are
  atomic and compared whole;
- resource quantities are compared by value (the API server stores `1000m` as `1`, `0.5Gi` as `512Mi`);
- an empty value we render ({} or []) matches an absent one (the API server drops some of them).

Nothing here talks to the API: the comparison is pure, and unit-tested against live objects as the API
server returns them.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

_QUANTITY = re.compile(
    r"^([+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E|[eE][+-]?[0-9]+)?$")
_SUFFIXES: dict[str, Decimal] = {
    "": Decimal(1), "n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"),
    "k": Decimal("1e3"), "M": Decimal("1e6"), "G": Decimal("1e9"), "T": Decimal("1e12"),
    "P": Decimal("1e15"), "E": Decimal("1e18"),
    **{suffix: Decimal(1024) ** (i + 1) for i, suffix in enumerate(("Ki", "Mi", "Gi", "Ti", "Pi", "Ei"))},
}
# Maps whose values are resource quantities, and single fields that are one.
_QUANTITY_MAPS = frozenset({"requests", "limits"})
_QUANTITY_FIELDS = frozenset({"sizeLimit"})
# Keys that identify the items of a list of objects (the list-map keys of the Kubernetes API we use).
_ITEM_KEYS = ("name", "uid")
_SHOWN_VALUE_LENGTH = 80


@dataclasses.dataclass(frozen=True)
class Drift:
    """One field we render whose live value differs: its path, what we render, what was found (None: absent)."""

    path: str
    rendered: Any
    found: Any

    def describe(self) -> str:
        """`path` with the value found and the value put back, shortened."""
        found = "absent" if self.found is None else _shown(self.found)
        return f"{self.path} (was {found}, put back {_shown(self.rendered)})"


def quantity_value(value: Any) -> Decimal | None:
    """The value of a Kubernetes resource quantity ("500m", "2Gi", "1e3", 2), or None when it is not one."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return Decimal(str(value))
    if not isinstance(value, str):
        return None
    match = _QUANTITY.match(value.strip())
    if match is None:
        return None
    number, suffix = match.group(1), match.group(2) or ""
    try:
        if suffix[:1] in ("e", "E"):
            return Decimal(number) * (Decimal(10) ** int(suffix[1:]))
        return Decimal(number) * _SUFFIXES[suffix]
    except (InvalidOperation, KeyError, ValueError):
        return None


def drifted(rendered: Mapping[str, Any], live: Mapping[str, Any],
            ignore: Sequence[str] = ()) -> list[Drift]:
    """The fields of `rendered` whose value in `live` differs, outermost first; [] when live holds them all.

    `ignore` names top-level paths (e.g. "metadata.annotations.x") that are not compared.
    """
    found: list[Drift] = []
    _compare(rendered, live, "", found, quantity=False, ignore=frozenset(ignore))
    return found


def _empty(value: Any) -> bool:
    return value is None or (isinstance(value, Mapping | list | tuple) and not value)


def _compare(rendered: Any, live: Any, path: str, out: list[Drift], *, quantity: bool,
             ignore: frozenset[str]) -> None:
    if path in ignore:
        return
    if _empty(rendered):
        if not _empty(live):
            out.append(Drift(path, rendered, live))
        return
    if live is None:
        out.append(Drift(path, rendered, None))
        return
    if isinstance(rendered, Mapping):
        if not isinstance(live, Mapping):
            out.append(Drift(path, rendered, live))
            return
        for key, value in rendered.items():
            child = f"{path}.{key}" if path else str(key)
            # The values of a quantity map (requests, limits) are quantities, and so is a quantity field.
            _compare(value, live.get(key), child, out,
                     quantity=quantity or key in _QUANTITY_MAPS or key in _QUANTITY_FIELDS, ignore=ignore)
        return
    if isinstance(rendered, list | tuple):
        _compare_list(list(rendered), live, path, out, ignore=ignore)
        return
    if quantity and not isinstance(rendered, bool):
        want, have = quantity_value(rendered), quantity_value(live)
        if want is not None and have is not None:
            if want != have:
                out.append(Drift(path, rendered, live))
            return
    # True == 1 in Python, not in JSON.
    equal = rendered is live if isinstance(rendered, bool) or isinstance(live, bool) else rendered == live
    if not equal:
        out.append(Drift(path, rendered, live))


def _item_key(items: list[Any]) -> str | None:
    """The field that names the items of `items`, when every item is an object with a distinct one."""
    if not items or not all(isinstance(item, Mapping) for item in items):
        return None
    for key in _ITEM_KEYS:
        names = [item.get(key) for item in items]
        if all(isinstance(n, str) and n for n in names) and len(set(names)) == len(names):
            return key
    return None


def _compare_list(rendered: list[Any], live: Any, path: str, out: list[Drift], *,
                  ignore: frozenset[str]) -> None:
    if not isinstance(live, list):
        out.append(Drift(path, rendered, live))
        return
    key = _item_key(rendered)
    if key is not None:
        by_key = {item.get(key): item for item in live if isinstance(item, Mapping)}
        for item in rendered:
            _compare(item, by_key.get(item[key]), f"{path}[{item[key]}]", out, quantity=False, ignore=ignore)
        return
    if len(rendered) != len(live):
        out.append(Drift(path, rendered, live))
        return
    before = len(out)
    for i, (want, have) in enumerate(zip(rendered, live, strict=True)):
        _compare(want, have, f"{path}[{i}]", out, quantity=False, ignore=ignore)
    if len(out) > before and not any(isinstance(item, Mapping) for item in rendered):
        # A list of plain values (a command, capabilities) is one value: name it once, whole.
        del out[before:]
        out.append(Drift(path, rendered, live))


def _shown(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return text if len(text) <= _SHOWN_VALUE_LENGTH else text[:_SHOWN_VALUE_LENGTH - 1] + "…"


def describe(kind: str, name: str, drifts: Sequence[Drift], limit: int = 5) -> str:
    """One line for an Event: which child, which fields, what was found and what was put back."""
    shown = "; ".join(d.describe() for d in drifts[:limit])
    more = f"; and {len(drifts) - limit} more" if len(drifts) > limit else ""
    return f"Put back {kind} {name}, changed outside the operator: {shown}{more}"
