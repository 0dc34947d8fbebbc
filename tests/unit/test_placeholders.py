"""The `{{placeholder}}`s of a Prometheus query: found in order, spaces allowed, unknown ones left alone."""

from __future__ import annotations

from modeldeploy.api.placeholders import PROMETHEUS_PLACEHOLDERS, fill_query, placeholders


def test_placeholders_are_found_in_order_with_or_without_spaces() -> None:
    assert placeholders("x{a='{{ name }}',b='{{revision}}'}[{{interval }}] {{pod-name}}") == [
        "name", "revision", "interval", "pod-name"]
    assert placeholders("{{{name}}}") == ["name"]
    assert placeholders("no placeholder {name} {{}") == []


def test_every_known_placeholder_is_filled_and_an_unknown_one_is_left_alone() -> None:
    query = " ".join("{{" + name + "}}" for name in PROMETHEUS_PLACEHOLDERS) + " {{ pod }}"
    values = {name: name.upper() for name in PROMETHEUS_PLACEHOLDERS}
    assert fill_query(query, values) == "NAMESPACE NAME REVISION ROLE INTERVAL {{ pod }}"
