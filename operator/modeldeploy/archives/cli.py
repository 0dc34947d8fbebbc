"""`modeldeploy archive build|verify`: the command the build Job and the serving pods run.

build prints one JSON object (inputsDigest, sha256, uri, key, format, bytes, seconds, reused,
warnings) and exits 0; a refused input exits 2 with one line on stderr; any other failure exits 1.
With --termination-message-path the same JSON (or {"reason", "message"} on failure) is written
there for Kubernetes to copy into the pod's terminationMessage.

verify exits 0 when the artifact has the expected sha256 (with --output, it is then also there);
1 when it has other bytes or is missing; 2 for a malformed --sha256; 3 when the store refused the
credentials; 4 when it could not be checked for another reason (store unreachable, disk full). The
failure is one line on stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from typing import Any

from modeldeploy.archives.builder import (
    FORMATS,
    ArchiveRequest,
    ArchiveResult,
    BuildSettings,
    build_archive,
    handler_from_cli,
)
from modeldeploy.archives.deflate import DEFAULT_LEVEL
from modeldeploy.archives.errors import ArchiveError, InputRefused, IntegrityError
from modeldeploy.archives.rules import Limits
from modeldeploy.archives.s3 import S3Config
from modeldeploy.archives.sources import Source
from modeldeploy.archives.stores import open_store
from modeldeploy.archives.verify import StoreAccessDenied, verify

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_REFUSED = 2
# `archive verify`: the artifact could not be read at all (not a digest mismatch).
EXIT_ACCESS_DENIED = 3
EXIT_UNAVAILABLE = 4
# Kubernetes keeps at most 4096 bytes of a termination message.
TERMINATION_MESSAGE_MAX = 4096


def register(subparsers: Any) -> None:
    """Add the `archive` command (sub-commands build and verify) to the modeldeploy CLI."""
    archive = subparsers.add_parser(
        "archive",
        help="build and verify reproducible TorchServe archives",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = archive.add_subparsers(dest="archive_command", required=True)
    _add_build(commands)
    _add_verify(commands)


def add_s3_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("S3 (credentials come from AWS_* environment variables, never flags)")
    group.add_argument(
        "--s3-endpoint-url",
        "--s3-endpoint",
        dest="s3_endpoint_url",
        help="S3 API endpoint (default: MODELDEPLOY_S3_ENDPOINT_URL, AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL or AWS)",
    )
    group.add_argument("--s3-region", help="region (default: AWS_REGION / AWS_DEFAULT_REGION)")
    group.add_argument(
        "--s3-addressing-style",
        choices=["path", "virtual"],
        help="bucket addressing (default: MODELDEPLOY_S3_ADDRESSING_STYLE or auto)",
    )


def _add_build(commands: Any) -> None:
    build = commands.add_parser("build", help="build (or reuse) an archive in a store")
    build.add_argument("--model-name", required=True, help="TorchServe model name")
    build.add_argument("-v", "--version", required=True, help="model version")
    build.add_argument("--serialized-file", required=True, help="weights: path, https://... or s3://...")
    build.add_argument("--model-file", help="Python file with the model class (eager mode)")
    build.add_argument("--handler", required=True, help="built-in handler name, or a *.py file[:function]")
    build.add_argument("--extra-files", help="comma-separated files or directories")
    build.add_argument("-r", "--requirements-file", help="requirements.txt for the model")
    build.add_argument("-c", "--config-file", help="model-config.yaml")
    build.add_argument("--archive-format", required=True, choices=FORMATS)
    build.add_argument("--store", required=True, help="store directory or s3://BUCKET/PREFIX")
    for flag in ("serialized-file", "handler", "model-file", "requirements-file", "config-file"):
        build.add_argument(f"--{flag}-sha256", help=f"sha256 pin of --{flag} (required for https)")
    build.add_argument(
        "--extra-files-sha256",
        help="comma-separated pins, aligned with --extra-files (leave a position empty for no pin)",
    )
    build.add_argument("--source-root", help="every local source and symlink target must lie inside it")
    build.add_argument(
        "--allow-insecure-http", action="store_true", help="accept plain http:// sources (development and tests only)"
    )
    build.add_argument("--ca-bundle", help="CA certificates for https sources (default: the system's)")
    build.add_argument("--timeout", type=float, default=60.0, help="network timeout in seconds")
    defaults = Limits()
    build.add_argument("--max-file-bytes", type=int, default=defaults.max_file_bytes)
    build.add_argument("--max-total-bytes", type=int, default=defaults.max_total_bytes)
    build.add_argument("--max-files", type=int, default=defaults.max_files)
    build.add_argument(
        "--source-date-epoch",
        type=int,
        help="createdOn and entry times, seconds since 1970 (default: $SOURCE_DATE_EPOCH, else 0)",
    )
    build.add_argument("--deflate-level", type=int, default=DEFAULT_LEVEL, help="zlib level for zip and tgz")
    build.add_argument(
        "--work-dir", help="local directory for downloads when the store is S3 (created when missing)"
    )
    build.add_argument("--termination-message-path", help="also write the result JSON here (Kubernetes)")
    add_s3_flags(build)
    build.set_defaults(func=run_build)


def _add_verify(commands: Any) -> None:
    check = commands.add_parser("verify", help="check an artifact's sha256 (exit 0 when it matches)")
    check.add_argument("uri", help="artifact path, file://, or s3:// URI")
    check.add_argument("--sha256", required=True, help="expected sha256")
    check.add_argument(
        "--output",
        help="also copy the artifact to this file while checking it; the file appears only when the sha256 matches",
    )
    add_s3_flags(check)
    check.set_defaults(func=run_verify)


def s3_config(args: argparse.Namespace) -> S3Config:
    config = S3Config.from_env()
    return S3Config(
        endpoint_url=args.s3_endpoint_url or config.endpoint_url,
        region=args.s3_region or config.region,
        addressing_style=args.s3_addressing_style or config.addressing_style,
    )


def _split(value: str | None) -> list[str]:
    return [item.strip() for item in value.split(",")] if value else []


def _source_date_epoch(flag: int | None) -> int:
    if flag is not None:
        return flag
    value = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    if not value:
        return 0
    if not value.isdigit():
        raise InputRefused("SOURCE_DATE_EPOCH", value, "must be a whole number of seconds since 1970")
    return int(value)


def request_from_args(args: argparse.Namespace) -> ArchiveRequest:
    """The ArchiveRequest the build flags describe."""
    extras = [item for item in _split(args.extra_files) if item]
    pins = _split(args.extra_files_sha256)
    if len(pins) > len(extras):
        raise InputRefused("extraFilesSha256", args.extra_files_sha256, "more pins than extra files")
    pins += [""] * (len(extras) - len(pins))

    def source(value: str | None, pin: str | None) -> Source | None:
        return Source(value, sha256=pin or None) if value else None

    handler, entry_point = handler_from_cli(args.handler, args.handler_sha256)
    serialized = source(args.serialized_file, args.serialized_file_sha256)
    assert serialized is not None  # argparse requires it
    return ArchiveRequest(
        model_name=args.model_name,
        version=args.version,
        serialized_file=serialized,
        handler=handler,
        handler_entry_point=entry_point,
        model_file=source(args.model_file, args.model_file_sha256),
        extra_files=tuple(Source(item, sha256=pin or None) for item, pin in zip(extras, pins, strict=True)),
        requirements_file=source(args.requirements_file, args.requirements_file_sha256),
        config_file=source(args.config_file, args.config_file_sha256),
        archive_format=args.archive_format,
        created_on_epoch=_source_date_epoch(args.source_date_epoch),
        deflate_level=args.deflate_level,
    )


def termination_message(document: dict[str, Any]) -> str:
    """document as JSON within Kubernetes' 4096-byte limit (warnings are shortened first, then dropped)."""
    text = json.dumps(document, sort_keys=True)
    if len(text.encode()) <= TERMINATION_MESSAGE_MAX:
        return text
    shortened = dict(document)
    warnings = list(shortened.get("warnings", []))
    shortened["warnings"] = [item[:200] for item in warnings]
    while warnings and len(json.dumps(shortened, sort_keys=True).encode()) > TERMINATION_MESSAGE_MAX:
        warnings.pop()
        shortened["warnings"] = [item[:200] for item in warnings] + ["(more warnings in the build log)"]
    if "message" in shortened:
        shortened["message"] = str(shortened["message"])[:3000]
    return json.dumps(shortened, sort_keys=True)


def _write_termination(path: str | None, document: dict[str, Any]) -> None:
    if not path:
        return
    try:
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(termination_message(document))
    except OSError as error:
        print(f"modeldeploy archive build: cannot write {path}: {error}", file=sys.stderr)


def _exit_on_sigterm(signum: int, frame: object) -> None:
    # Kubernetes stops a Job's pod with SIGTERM: unwind so the staging area is removed on the way out.
    raise SystemExit(128 + signum)


def run_build(args: argparse.Namespace) -> int:
    """Run `archive build`; return the exit code."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        request = request_from_args(args)
        s3 = s3_config(args)
        settings = BuildSettings(
            limits=Limits(args.max_file_bytes, args.max_total_bytes, args.max_files),
            source_root=args.source_root,
            allow_insecure_http=args.allow_insecure_http,
            ca_bundle=args.ca_bundle,
            timeout_seconds=args.timeout,
            s3=s3,
        )
        store = open_store(args.store, s3=s3, work_dir=args.work_dir)
        result: ArchiveResult = build_archive(request, store, settings)
    except InputRefused as error:
        print(f"modeldeploy archive build: refused: {error}", file=sys.stderr)
        _write_termination(args.termination_message_path, {"reason": "InputRefused", "message": str(error)})
        return EXIT_REFUSED
    except Exception as error:  # the Job must end with a message, whatever happened
        kind = "BuildFailed" if isinstance(error, ArchiveError) else type(error).__name__
        print(f"modeldeploy archive build: failed: {error}", file=sys.stderr)
        _write_termination(args.termination_message_path, {"reason": kind, "message": str(error)})
        return EXIT_FAILED
    document = result.to_json()
    print(json.dumps(document, sort_keys=True))
    _write_termination(args.termination_message_path, document)
    return EXIT_OK


def run_verify(args: argparse.Namespace) -> int:
    """Run `archive verify`; 0 when the artifact has the expected sha256, else the code of the failure."""
    try:
        actual = verify(args.uri, args.sha256, s3=s3_config(args), output=args.output)
    except StoreAccessDenied as error:
        print(f"modeldeploy archive verify: ACCESS DENIED: {error}", file=sys.stderr)
        return EXIT_ACCESS_DENIED
    except IntegrityError as error:
        print(f"modeldeploy archive verify: FAILED: {error}", file=sys.stderr)
        return EXIT_FAILED
    except InputRefused as error:
        print(f"modeldeploy archive verify: refused: {error}", file=sys.stderr)
        return EXIT_REFUSED
    except Exception as error:  # store unreachable, disk full...: the pod must end with a line saying why
        print(f"modeldeploy archive verify: UNAVAILABLE: {error}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    where = f" -> {args.output}" if args.output else ""
    print(f"modeldeploy archive verify: OK: {args.uri}{where} sha256 {actual}")
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    """Entry point for `python -m modeldeploy.archives.cli archive ...` (no operator imports needed)."""
    parser = argparse.ArgumentParser(prog="modeldeploy")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
