"""How well does the canary analysis judge an error rate? Confidence bounds against a naive threshold.

    python benchmarks/canary_analysis.py [--trials 2000] [--seed 7]

Simulates whole rollouts (steps of analysis windows, a failure limit, a progress deadline) for a
good canary (true error rate half the bound) and a bad one (five times the bound, and a broken one
at 30 %), with the same random draws for every method, and prints JSON:

- `naive`: a window fails when errors/requests > max and passes when <= max (enough requests);
- `exact`: the product's rule (modeldeploy.canary.verdicts): exact binomial (Clopper-Pearson) 95 %
  bounds, a window fails only when the lower bound is above max, and evidence (upper bound below
  max) may pool the step's windows;
- `wilson`: the same with the Wilson score interval;
- `exact-window`: the product's bounds without pooling.

For each: how often a good canary is rolled back (false rollback), never promoted for lack of
evidence, or promoted, and how many canary requests it takes to roll back a bad one.

Figures (seed 7, 2000 trials, bound 1 %, failureLimit 1, 3 steps of at most 20 windows):

    requests/window                          20     50    100    200    500
    good canary rolled back    naive      11.6 % 40.9 % 10.1 %  8.2 %  2.5 %
                               wilson      0.3 % 14.5 %  7.4 %  0.4 %  0 %
                               exact       0.3 %  0.1 %  0.1 %  0.1 %  0 %
    good canary promoted       exact       0.5 %  7.0 % 45 %   91 %  100 %
    bad canary (5 %) caught    all         98 %  100 %  100 %  100 %  100 %
      median requests          naive        60    100    200    400   1000
                               exact       120    200    200    400   1000

A good canary that is neither rolled back nor promoted ends in InsufficientData: showing a rate
of 0.5 % below 1 % at 95 % takes about a thousand requests per step, and the exact bound does
not pretend otherwise.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "operator"))

from modeldeploy.api.rollout import MeasurementVerdict
from modeldeploy.canary.verdicts import Bounds, Sample, judge

BOUND = 0.01
MIN_REQUESTS = 20
FAILURE_LIMIT = 1           # the default: the second Failed window rolls back
STEPS = 3                   # analysed steps before promotion (e.g. 25 %, 50 %, 75 %)
PAUSE_WINDOWS = 2           # a step's pause: one minute of 30 s windows
DEADLINE_WINDOWS = 20       # progressDeadlineSeconds 600 / interval 30 s
WINDOW_SIZES = (20, 50, 100, 200, 500)
TRUTHS = {"good (half the bound)": BOUND / 2, "bad (five times the bound)": BOUND * 5, "broken (30 %)": 0.30}

WindowRule = Callable[[int, int], MeasurementVerdict]

Z_95 = 1.959963984540054
"""The standard normal quantile of a two-sided 95 % interval."""


def wilson_interval(events: int, requests: int, z: float = Z_95) -> tuple[float, float]:
    """The Wilson score interval of a binomial proportion events/requests."""
    if requests <= 0:
        return 0.0, 1.0
    n = float(requests)
    p = min(max(events / n, 0.0), 1.0)
    z2 = z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return max(0.0, centre - half), min(1.0, centre + half)


@functools.cache
def naive(errors: int, requests: int) -> MeasurementVerdict:
    if requests < MIN_REQUESTS:
        return MeasurementVerdict.INCONCLUSIVE
    return MeasurementVerdict.FAILED if errors / requests > BOUND else MeasurementVerdict.SUCCESSFUL


@functools.cache
def wilson(errors: int, requests: int) -> MeasurementVerdict:
    """The same rule as the product's, with the Wilson score interval instead of the exact one."""
    if requests < MIN_REQUESTS:
        return MeasurementVerdict.INCONCLUSIVE
    lower, upper = wilson_interval(errors, requests)
    if lower > BOUND:
        return MeasurementVerdict.FAILED
    return MeasurementVerdict.SUCCESSFUL if upper <= BOUND else MeasurementVerdict.INCONCLUSIVE


@functools.cache
def exact(errors: int, requests: int) -> MeasurementVerdict:
    """The product's rule (modeldeploy.canary.verdicts.judge: exact binomial bounds)."""
    return judge("error-rate", Sample(errors / requests, requests, errors), Bounds(max=BOUND),
                 MIN_REQUESTS).verdict


METHODS: dict[str, tuple[WindowRule, bool]] = {
    "naive": (naive, False),
    "wilson": (wilson, True),
    "exact": (exact, True),
    "exact-window": (exact, False),
}


def rollout(errors: np.ndarray, size: int, rule: WindowRule, pooled: bool) -> tuple[str, int]:
    """One rollout over pre-drawn error counts [step, window]; the outcome and the canary requests seen."""
    failed = 0
    requests = 0
    for step in range(STEPS):
        evidence = False
        pool_errors = pool_requests = 0
        for window in range(DEADLINE_WINDOWS):
            k = int(errors[step, window])
            requests += size
            verdict = rule(k, size)
            if verdict is MeasurementVerdict.FAILED:
                failed += 1
                if failed > FAILURE_LIMIT:
                    return "rolled back", requests
            pool_errors += k
            pool_requests += size
            if verdict is MeasurementVerdict.SUCCESSFUL or (
                pooled and verdict is MeasurementVerdict.INCONCLUSIVE
                and rule(pool_errors, pool_requests) is MeasurementVerdict.SUCCESSFUL
            ):
                evidence = True
            if evidence and window + 1 >= PAUSE_WINDOWS:
                break
        else:
            return "insufficient data", requests
    return "promoted", requests


def simulate(trials: int, seed: int) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    results: dict[str, Any] = {}
    for truth_name, rate in TRUTHS.items():
        by_size: dict[str, Any] = {}
        for size in WINDOW_SIZES:
            # the same draws for every method: differences come from the rule alone
            draws = rng.binomial(size, rate, size=(trials, STEPS, DEADLINE_WINDOWS))
            by_method: dict[str, Any] = {}
            for method, (rule, pooled) in METHODS.items():
                outcomes: dict[str, int] = {"promoted": 0, "rolled back": 0, "insufficient data": 0}
                to_catch: list[int] = []
                for trial in range(trials):
                    outcome, requests = rollout(draws[trial], size, rule, pooled)
                    outcomes[outcome] += 1
                    if outcome == "rolled back":
                        to_catch.append(requests)
                entry: dict[str, Any] = {key.replace(" ", "_"): round(count / trials, 4)
                                         for key, count in outcomes.items()}
                if to_catch:
                    entry["requests_to_rollback_median"] = int(np.median(to_catch))
                    entry["requests_to_rollback_p90"] = int(np.percentile(to_catch, 90))
                by_method[method] = entry
            by_size[f"{size} requests/window"] = by_method
        results[f"{truth_name}: true rate {rate:g}"] = by_size
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    results = simulate(args.trials, args.seed)
    report = {
        "setup": {"bound_max": BOUND, "min_requests": MIN_REQUESTS, "failure_limit": FAILURE_LIMIT,
                  "analysed_steps": STEPS, "pause_windows": PAUSE_WINDOWS, "deadline_windows": DEADLINE_WINDOWS,
                  "trials": args.trials, "seed": args.seed, "confidence": 0.95},
        "results": results,
        "seconds": round(time.perf_counter() - started, 1),
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
