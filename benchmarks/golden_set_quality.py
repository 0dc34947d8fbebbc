"""How well does a golden set judge a model? The product's exact and paired bounds against naive thresholds.

    python benchmarks/golden_set_quality.py [--trials 2000] [--seed 11]

Simulates golden sets of several sizes answered by a stable revision that is right on 95 % of the
examples and by a canary that is either as good (a retrain: it disagrees with stable on 2 % of the
examples, as often right as wrong there) or 5 points worse (right on 90 %). Every method judges the
same random draws, in this one process, and the figures are printed as one JSON document:

- absolute bound `min: 0.94` on the canary's accuracy (one point below stable's, as a bound is set in practice):
  - `naive`: the point estimate against the bound (Successful if >= 0.94, else Failed);
  - `exact`: the product's rule (modeldeploy.canary.quality.accuracy): Clopper-Pearson 95 % bounds,
    Failed only when the upper bound is below 0.94, Successful only when the lower bound is above it.
- relative bound `relativeTo: stable, min: -0.02` on canary - stable:
  - `naive`: the difference of the point estimates against -0.02;
  - `unpaired`: each revision's own exact interval at 97.5 %, combined (ignores that the examples
    are the same ones);
  - `paired`: the product's rule (modeldeploy.canary.quality.difference): only the examples one
    revision answered right and the other wrong count, with exact bounds (McNemar's view).

For each method and size: how often a canary as good as stable is rolled back (`falseRollback`, a
Failed verdict), how often it gets its evidence (`passed`), and how often a canary 5 points worse is
caught (`caught`); then per method the smallest set that catches the worse canary 95 % of the time
while rolling back the good one at most 5 % of the time (`examplesNeeded`).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from modeldeploy.api.spec import GoldenSetMeasure
from modeldeploy.canary.quality import Estimate, LabelTally, PairedTally, Tally, accuracy, difference
from modeldeploy.canary.verdicts import exact_interval

SIZES = (100, 200, 500, 1000, 2000, 5000)
ABSOLUTE_MIN = 0.94
RELATIVE_MIN = -0.02
SHARE = 0.95
CATCH = 0.95
"""A method 'needs' the smallest set that catches the worse canary this often..."""
FALSE_ROLLBACKS = 0.05
"""...while rolling back one as good as stable at most this often."""

JOINT = {
    # (both right, stable only right, canary only right, both wrong)
    "as good as stable": (0.94, 0.01, 0.01, 0.04),
    "5 points worse": (0.895, 0.055, 0.005, 0.045),
}


@dataclass(frozen=True)
class Draw:
    """One golden set's answers, counted: both right, stable only, canary only, both wrong."""

    both: int
    stable_only: int
    canary_only: int
    neither: int

    @property
    def examples(self) -> int:
        return self.both + self.stable_only + self.canary_only + self.neither

    def tally(self, right: int) -> Tally:
        n = self.examples
        return Tally(examples=n, labels={"label": LabelTally(expected=n, predicted=n, hits=right)})

    @property
    def canary(self) -> Tally:
        return self.tally(self.both + self.canary_only)

    @property
    def stable(self) -> Tally:
        return self.tally(self.both + self.stable_only)

    @property
    def paired(self) -> PairedTally:
        return PairedTally(examples=self.examples, canary_only=self.canary_only, stable_only=self.stable_only,
                           agreeing=self.both + self.neither)


def verdict(low: float, high: float, bound: float) -> str:
    """Failed only when the whole interval is below the bound, Successful only when above it."""
    if high < bound:
        return "Failed"
    if low >= bound:
        return "Successful"
    return "Inconclusive"


def naive(value: float, bound: float) -> str:
    return "Successful" if value >= bound else "Failed"


def by_interval(found: Estimate, bound: float) -> str:
    return verdict(found.low, found.high, bound)


def unpaired(draw: Draw) -> str:
    ours = exact_interval(draw.both + draw.canary_only, draw.examples, 0.975)
    theirs = exact_interval(draw.both + draw.stable_only, draw.examples, 0.975)
    return verdict(ours[0] - theirs[1], ours[1] - theirs[0], RELATIVE_MIN)


METHODS: dict[str, dict[str, Callable[[Draw], str]]] = {
    f"absolute (min {ABSOLUTE_MIN})": {
        "naive": lambda d: naive(d.canary.right / d.examples, ABSOLUTE_MIN),
        "exact": lambda d: by_interval(accuracy(d.canary), ABSOLUTE_MIN),
    },
    f"relative to stable (min {RELATIVE_MIN})": {
        "naive": lambda d: naive((d.canary.right - d.stable.right) / d.examples, RELATIVE_MIN),
        "unpaired": unpaired,
        "paired": lambda d: by_interval(difference(GoldenSetMeasure.ACCURACY, d.canary, d.stable, d.paired),
                                        RELATIVE_MIN),
    },
}


def draws(rng: np.random.Generator, size: int, joint: tuple[float, float, float, float], trials: int) -> list[Draw]:
    return [Draw(*(int(x) for x in row)) for row in rng.multinomial(size, joint, size=trials)]


def shares(verdicts: list[str]) -> dict[str, float]:
    total = len(verdicts)
    return {v: round(verdicts.count(v) / total, 4) for v in ("Failed", "Successful", "Inconclusive")}


def run(trials: int, seed: int) -> dict[str, object]:
    rng = np.random.default_rng(seed)
    samples = {(kind, size): draws(rng, size, joint, trials) for kind, joint in JOINT.items() for size in SIZES}
    results: dict[str, object] = {}
    for family, methods in METHODS.items():
        per_method: dict[str, object] = {}
        for name, judge in methods.items():
            rows = []
            needed = None
            for size in SIZES:
                good = shares([judge(d) for d in samples[("as good as stable", size)]])
                worse = shares([judge(d) for d in samples[("5 points worse", size)]])
                rows.append({"examples": size, "falseRollback": good["Failed"], "passed": good["Successful"],
                             "caught": worse["Failed"], "worsePassed": worse["Successful"]})
                if needed is None and worse["Failed"] >= CATCH and good["Failed"] <= FALSE_ROLLBACKS:
                    needed = size
            per_method[name] = {"bySize": rows, "examplesNeeded": needed}
        results[family] = per_method
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args(argv)
    started = time.monotonic()
    results = run(args.trials, args.seed)
    print(json.dumps({
        "benchmark": "golden-set-quality", "trials": args.trials, "seed": args.seed,
        "stableAccuracy": SHARE, "canaries": {k: dict(zip(("bothRight", "stableOnly", "canaryOnly", "bothWrong"), v,
                                                          strict=True)) for k, v in JOINT.items()},
        "results": results, "seconds": round(time.monotonic() - started, 1),
        "python": platform.python_version(),
    }, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
