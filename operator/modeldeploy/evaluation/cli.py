"""`modeldeploy evaluate`: the command of a golden-set measurement's Job.

It reads the golden set (a path where the Job mounts the claim, https:// or s3://; a sha256 pin is
checked before any example is sent), sends every example to the canary's pods (and stable's, when
given), and prints the counts as one JSON line, the last of its log: `{"evaluation": {...}}`, or
`{"error": "..."}` naming the set, the line and the problem, with exit code 1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
from collections.abc import Iterator
from typing import Any

from modeldeploy.api.spec import GoldenSetMeasure
from modeldeploy.archives.cli import add_s3_flags, s3_config
from modeldeploy.archives.errors import ArchiveError
from modeldeploy.archives.rules import Limits
from modeldeploy.archives.sources import Source, SourceResolver
from modeldeploy.evaluation.evaluator import Pods, evaluate
from modeldeploy.evaluation.goldenset import GoldenSetError, read_examples
from modeldeploy.evaluation.prediction import Argmax, Body, JsonPath, Prediction


def register(subparsers: Any) -> None:
    evaluate_command = subparsers.add_parser(
        "evaluate", help="send a golden set to a revision's pods and print the counts (a measurement's Job)",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    evaluate_command.add_argument("--golden-set", required=True, help="a path, https://... or s3://BUCKET/KEY")
    evaluate_command.add_argument("--sha256", help="the set's expected sha256 (required for https://)")
    evaluate_command.add_argument("--measure", required=True, choices=[m.value for m in GoldenSetMeasure])
    evaluate_command.add_argument("--prediction", default="body",
                                  help='where the label is in an answer: "body", "argmax" or a path such as '
                                       "$.labels[0]")
    evaluate_command.add_argument("--canary", action="append", required=True, metavar="URL",
                                  help="a canary pod's inference URL, http://IP:PORT/predictions/MODEL (repeat)")
    evaluate_command.add_argument("--stable", action="append", default=[], metavar="URL",
                                  help="a stable pod's inference URL (repeat; the measures comparing with stable)")
    evaluate_command.add_argument("--concurrency", type=int, default=8)
    evaluate_command.add_argument("--response-timeout", type=float, default=30.0, metavar="SECONDS")
    add_s3_flags(evaluate_command)
    evaluate_command.set_defaults(func=run_evaluate)


def prediction_of(text: str) -> Prediction:
    """The --prediction flag as a Prediction."""
    if text == "body":
        return Body()
    if text == "argmax":
        return Argmax()
    path = JsonPath(text)
    _ = path.steps  # refuses a path outside the subset now, not at the first answer
    return path


def _lines(path: str) -> Iterator[bytes]:
    with open(path, "rb") as handle:
        yield from handle


def run_evaluate(args: argparse.Namespace) -> int:
    measure = GoldenSetMeasure(args.measure)
    try:
        prediction = prediction_of(args.prediction)
        with tempfile.TemporaryDirectory(prefix="golden-set-") as downloads:
            resolver = SourceResolver(limits=Limits(), download_dir=downloads, s3=s3_config(args))
            resolved = resolver.resolve("golden set", Source(args.golden_set, args.sha256))[0]
            examples = read_examples(_lines(resolved.path), args.golden_set, needs_labels=measure.needs_labels)
            stable = Pods("stable", tuple(args.stable)) if args.stable else None
            result = asyncio.run(evaluate(examples, prediction, Pods("canary", tuple(args.canary)), stable,
                                          concurrency=args.concurrency, response_timeout=args.response_timeout))
    except (ArchiveError, GoldenSetError, ValueError, OSError) as error:
        print(json.dumps({"error": str(error)}))
        return 1
    print(json.dumps({"evaluation": result.to_dict()}, separators=(",", ":")))
    return 0
