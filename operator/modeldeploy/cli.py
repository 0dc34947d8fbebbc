"""The `modeldeploy` command: `operator` runs the operator, `archive` builds and verifies archives,
`evaluate` measures a golden set (the command of a measurement's Job), `promote`, `abort`, `retry`,
`pause`, `resume` steer a rollout and `status` shows it. Installed as `kubectl-modeldeploy` too, it is
a kubectl plugin."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence


def build_parser() -> argparse.ArgumentParser:
    from modeldeploy import runner
    from modeldeploy.archives import cli as archive_cli
    from modeldeploy.evaluation import cli as evaluate_cli
    from modeldeploy.steering import commands as steering

    # As a kubectl plugin, help speaks of the command the user typed.
    prog = "kubectl modeldeploy" if os.path.basename(sys.argv[0]).startswith("kubectl-") else "modeldeploy"
    parser = argparse.ArgumentParser(prog=prog, description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    runner.register(commands)
    archive_cli.register(commands)
    evaluate_cli.register(commands)
    steering.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
