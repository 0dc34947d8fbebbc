"""One vocabulary of reasons: every reason the operator posts comes from `EventReason`.

The source is read with `ast`: no Event, condition or abort is built with a string literal for its reason,
every member is used, the rollback rules' reasons are exactly ROLLBACK_REASONS, and the README's table of
Event reasons lists exactly the members.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import modeldeploy
from modeldeploy.api import conditions, rollout
from modeldeploy.api.events import ROLLBACK_REASONS, EventReason

PACKAGE = Path(modeldeploy.__file__).parent
README = PACKAGE.parents[1] / "README.md"
ENUM_NAMES = {"EventReason", "Reason", "AbortReason"}
BUILD_PROGRAM = PACKAGE / "archives"
"""The archive build Job's program: its termination reasons (InputRefused, BuildFailed) are the Job's,
quoted in the ArchiveBuildFailed condition's message, never posted as a reason."""

# Where a call takes its reason: the callee's name, the positional index, the keyword.
REASON_ARGUMENTS = {"Event": (1, "reason"), "event": (None, "reason"), "of": (1, "reason"),
                    "ConditionState": (2, "reason"), "Abort": (0, "reason")}


def sources() -> Iterator[tuple[Path, ast.Module]]:
    for path in sorted(PACKAGE.rglob("*.py")):
        if BUILD_PROGRAM in path.parents:
            continue
        yield path, ast.parse(path.read_text(), filename=str(path))


def callee(call: ast.Call) -> str:
    func = call.func
    return func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""


def is_text(node: ast.expr) -> bool:
    return (isinstance(node, ast.Constant) and isinstance(node.value, str)) or isinstance(node, ast.JoinedStr)


def reason_arguments(tree: ast.Module) -> Iterator[ast.expr]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and callee(node) in REASON_ARGUMENTS:
            index, keyword = REASON_ARGUMENTS[callee(node)]
            if index is not None and len(node.args) > index:
                yield node.args[index]
            yield from (k.value for k in node.keywords if k.arg == keyword)
        elif isinstance(node, ast.Dict):
            yield from (value for key, value in zip(node.keys, node.values, strict=True)
                        if isinstance(key, ast.Constant) and key.value == "reason")


def members_named(tree: ast.AST) -> Iterator[EventReason]:
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in ENUM_NAMES
                and node.attr in EventReason.__members__):
            yield EventReason[node.attr]


def test_no_reason_is_a_string_literal() -> None:
    literal = [f"{path.relative_to(PACKAGE)}:{arg.lineno}: {ast.unparse(arg)}"
               for path, tree in sources() for arg in reason_arguments(tree) if is_text(arg)]
    assert literal == []


def test_the_vocabulary_is_one_enum() -> None:
    assert conditions.Reason is EventReason
    assert rollout.AbortReason is EventReason
    values = [member.value for member in EventReason]
    assert len(values) == len(set(values))
    assert all(re.fullmatch(r"[A-Z][A-Za-z]+", value) for value in values)


def test_every_member_is_posted_somewhere() -> None:
    used = {member for path, tree in sources() if path.name != "events.py" for member in members_named(tree)}
    assert used == set(EventReason)


def test_the_rollback_reasons_are_the_rules_reasons() -> None:
    rules = ast.parse((PACKAGE / "canary" / "rules.py").read_text())
    aborts = {member for node in ast.walk(rules) if isinstance(node, ast.Call) and callee(node) == "Abort"
              for member in members_named(node.args[0])}
    assert aborts == ROLLBACK_REASONS


def test_the_readme_table_lists_exactly_the_reasons() -> None:
    text = README.read_text()
    section = text.split("#### Event reasons", 1)[1].split("\n#", 1)[0]
    listed = re.findall(r"^\| `([A-Za-z]+)` \|", section, flags=re.MULTILINE)
    assert len(listed) == len(set(listed))
    assert set(listed) == {member.value for member in EventReason}
