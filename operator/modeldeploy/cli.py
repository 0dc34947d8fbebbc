"""The `modeldeploy` command: `operator` runs the operator, `archive` builds and verifies archives."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def build_parser() -> argparse.ArgumentParser:
    from modeldeploy import runner
    from modeldeploy.archives import cli as archive_cli

    parser = argparse.ArgumentParser(prog="modeldeploy", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    runner.register(commands)
    archive_cli.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
