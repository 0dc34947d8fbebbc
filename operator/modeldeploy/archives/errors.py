"""Errors of the archive builder: refusals of bad input (permanent) and build failures (retryable)."""

from __future__ import annotations


class ArchiveError(Exception):
    """Base class of every error the archive builder raises."""


class InputRefused(ArchiveError):
    """An input breaks a rule: retrying with the same input cannot succeed.

    The message names the input, the offending value and the rule, on one line.
    """

    def __init__(self, input_name: str, value: object, rule: str) -> None:
        self.input_name = input_name
        self.value = value
        self.rule = rule
        super().__init__(f"{input_name}: {_show(value)} refused: {rule}")


class UnsafeName(InputRefused):
    """A model name, version or archive entry name is not safe to use."""


class UnsafePath(InputRefused):
    """A source path is absolute where it must not be, escapes its root, or is not a regular file."""


class InputNotFound(InputRefused):
    """A source does not exist (local path, HTTP 404, missing S3 key)."""


class SizeLimitExceeded(InputRefused):
    """A source, or all sources together, exceed a configured size limit."""


class DigestMismatch(InputRefused):
    """A source's sha256 differs from its pin."""


class UnsupportedOption(InputRefused):
    """A combination of options the builder does not support (e.g. no-archive in an S3 store)."""


class BuildFailed(ArchiveError):
    """The build could not finish for a reason outside the inputs (I/O, network, store): retry may help."""


class SourceUnavailable(BuildFailed):
    """A remote source could not be fetched (connection error, timeout, server error)."""


class InputChanged(BuildFailed):
    """A source file changed while the archive was being written."""

    def __init__(self, input_name: str, detail: str) -> None:
        self.input_name = input_name
        super().__init__(f"{input_name}: changed while the archive was written ({detail}); retry the build")


class IntegrityError(ArchiveError):
    """An artifact's sha256 is not the expected one, or the artifact is missing or malformed."""


def _show(value: object) -> str:
    """Render a refused value on one line, quoted, with control characters escaped and length bounded."""
    text = value if isinstance(value, str) else repr(value)
    text = text.encode("unicode_escape").decode("ascii")
    if len(text) > 300:
        text = text[:300] + "..."
    return f"'{text}'"
