"""The `{{placeholder}}`s of a Prometheus query, defined once: the names a query may use, finding them,
filling them in.

The spec parser rejects a query that names anything but `PROMETHEUS_PLACEHOLDERS`; the prometheus
provider fills them in at each measurement. Spaces inside the braces are allowed (`{{ name }}`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

PROMETHEUS_PLACEHOLDERS = ("namespace", "name", "revision", "role", "interval")
"""What a Prometheus query may name as {{placeholder}}: filled in at each measurement."""

PLACEHOLDER = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}")
"""One `{{placeholder}}`; group 1 is its name without the surrounding spaces."""


def placeholders(query: str) -> list[str]:
    """The `{{placeholder}}` names `query` uses, in order of appearance."""
    return PLACEHOLDER.findall(query)


def fill_query(query: str, values: Mapping[str, str]) -> str:
    """`query` with each `{{placeholder}}` replaced by its value; a name without a value is left alone."""
    return PLACEHOLDER.sub(lambda found: values.get(found.group(1), found.group(0)), query)
