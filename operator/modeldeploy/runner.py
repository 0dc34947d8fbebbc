"""`modeldeploy operator`: run the operator against the current kubeconfig or in-cluster config."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import socket
from typing import Any, cast

import kopf

from modeldeploy import handlers
from modeldeploy.observability import serve_metrics
from modeldeploy.settings import RESYNC_ENV, OperatorConfig


def register(subparsers: Any) -> None:
    """Add the `operator` sub-command to the `modeldeploy` command line."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "operator",
        help="run the ModelDeployment operator",
        description="Run the ModelDeployment operator (one replica) with the current kubeconfig, "
                    "or the service account when in a pod.",
    )
    scope = parser.add_mutually_exclusive_group(required=True)
    scope.add_argument("-n", "--namespace", dest="namespaces", action="append", metavar="NS",
                       help="watch this namespace (repeatable; globs such as 'team-*' work)")
    scope.add_argument("-A", "--all-namespaces", action="store_true", help="watch every namespace")
    parser.add_argument("--liveness", metavar="URL", default=None,
                        help="serve a liveness endpoint, for example http://0.0.0.0:8080/healthz")
    parser.add_argument("--metrics", metavar="ADDRESS:PORT", default=None,
                        help="serve Prometheus metrics on /metrics, for example 0.0.0.0:8081")
    parser.add_argument("--resync-seconds", type=float, default=None,
                        help=f"reconcile every object this often (default: ${RESYNC_ENV} or 60)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log each reconcile")
    parser.add_argument("--debug", action="store_true", help="log kopf's internals too")
    parser.set_defaults(func=run_operator)


def run_operator(args: argparse.Namespace) -> int:
    """Run until SIGINT or SIGTERM; return the exit status."""
    config = OperatorConfig.from_env()
    if args.resync_seconds is not None:
        if args.resync_seconds <= 0:
            raise SystemExit("--resync-seconds must be greater than 0")
        config = dataclasses.replace(config, resync_seconds=args.resync_seconds)
    kopf.configure(debug=args.debug, verbose=args.debug)
    if args.verbose:
        logging.getLogger("modeldeploy").setLevel(logging.DEBUG)

    if args.metrics:
        address, _, port = args.metrics.rpartition(":")
        if not port.isdigit():
            raise SystemExit(f"--metrics must be ADDRESS:PORT, not {args.metrics!r}")
        serve_metrics(address or "0.0.0.0", int(port))

    registry = kopf.OperatorRegistry()
    handlers.register(registry, config)
    kopf.run(
        registry=registry,
        # Named explicitly: kopf would otherwise ask the password database, which knows no
        # arbitrary container user (runAsUser without a passwd entry).
        # (kopf's Identity is a NewType of str that kopf does not export.)
        identity=cast(Any, os.environ.get("POD_NAME") or socket.gethostname()),
        standalone=True,
        clusterwide=bool(args.all_namespaces),
        namespaces=args.namespaces or (),
        liveness_endpoint=args.liveness,
        memo=kopf.Memo(),
    )
    return 0
