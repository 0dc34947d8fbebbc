"""The quality of a model's answers on a golden set, judged with confidence like the error rate.

A golden set is examples with the label a good model gives them. Sending them to a revision's pods
gives one `Answer` per example: the label expected (None when the set has none) and the label read from
the response (None when the response was not 2xx or its label could not be read: wrong, and an error).

- `accuracy` and `agreement` (the share of examples where canary and stable predict the same label;
  it needs no labels) are proportions: the exact binomial (Clopper-Pearson) interval at 95 %.
- `macro-precision`, `macro-recall` and `macro-f1` average one value per label. Each label's precision
  and recall is a proportion with its own exact interval, at the confidence that makes them hold
  together (Bonferroni: 1 - 0.05/k for k intervals), so the averages of the bounds bound the average.
  F1 grows with precision and with recall, so its bounds are the F1 of the bounds. A bootstrap would
  be narrower, and wrong where it matters: with 20 examples all answered right every resample agrees,
  and its interval [1, 1] would pass any bound on 20 examples.
- `relativeTo: stable` judges canary - stable on the same examples, paired: only the examples where
  one of the two is right and the other wrong (the discordant pairs of McNemar's test) say anything
  about the difference. Its interval combines the exact interval of the share of discordant examples
  with that of the canary's share of them (each at 97.5 %, together 95 %); for the macro measures,
  canary's and stable's intervals at 97.5 % each.

A measure is Failed only when its whole interval lies outside the bounds, Successful only when inside,
Inconclusive in between: too few examples for the bound asked is never a pass, and never a rollback.
"""

from __future__ import annotations

import collections
import dataclasses
import enum
from collections.abc import Sequence

from modeldeploy.api.rollout import MeasurementVerdict
from modeldeploy.canary.verdicts import Bounds, Judgement, compare_interval, exact_interval

CONFIDENCE = 0.95


class Measure(enum.StrEnum):
    """What a golden-set metric measures (`provider.goldenSet.measure`)."""

    ACCURACY = "accuracy"
    MACRO_PRECISION = "macro-precision"
    MACRO_RECALL = "macro-recall"
    MACRO_F1 = "macro-f1"
    AGREEMENT = "agreement"

    @property
    def needs_labels(self) -> bool:
        """Whether every example must carry its label."""
        return self is not Measure.AGREEMENT

    @property
    def needs_stable(self) -> bool:
        """Whether the stable pods answer the examples too, whatever `relativeTo` says."""
        return self is Measure.AGREEMENT


@dataclasses.dataclass(frozen=True)
class Answer:
    """One example as a revision answered it: the label expected and the label it predicted."""

    label: str | None
    predicted: str | None


@dataclasses.dataclass(frozen=True)
class Estimate:
    """A measure's value over `examples`, with its interval at 95 %."""

    value: float
    low: float
    high: float
    examples: int


@dataclasses.dataclass(frozen=True)
class LabelCounts:
    """One label's examples: answered right, answered wrong, and the wrong answer given most often."""

    label: str
    right: int
    wrong: int
    confused_with: str | None = None


def confusion(answers: Sequence[Answer]) -> tuple[LabelCounts, ...]:
    """Per expected label, in label order: right, wrong, and the most common wrong prediction (ties: the
    first label; an unreadable answer is wrong but never the wrong label named)."""
    right: collections.Counter[str] = collections.Counter()
    wrong: dict[str, collections.Counter[str | None]] = collections.defaultdict(collections.Counter)
    for answer in answers:
        if answer.label is None:
            continue
        if answer.predicted == answer.label:
            right[answer.label] += 1
        else:
            wrong[answer.label][answer.predicted] += 1
    counts = []
    for label in sorted(set(right) | set(wrong)):
        mistakes = wrong.get(label, collections.Counter())
        named = sorted((-count, predicted) for predicted, count in mistakes.items() if predicted is not None)
        confused = named[0][1] if named else None
        counts.append(LabelCounts(label, right[label], sum(mistakes.values()), confused))
    return tuple(counts)


def proportion(successes: int, trials: int, confidence: float = CONFIDENCE) -> Estimate:
    """successes/trials with its exact interval (no trials: value 0 and the interval 0..1)."""
    low, high = exact_interval(successes, trials, confidence)
    return Estimate(successes / trials if trials else 0.0, low, high, trials)


def _labelled(answers: Sequence[Answer]) -> list[Answer]:
    missing = sum(1 for a in answers if a.label is None)
    if missing:
        raise ValueError(f"{missing} of {len(answers)} examples have no label")
    return list(answers)


def accuracy(answers: Sequence[Answer], confidence: float = CONFIDENCE) -> Estimate:
    """The share of examples answered with their label."""
    labelled = _labelled(answers)
    return proportion(sum(1 for a in labelled if a.predicted == a.label), len(labelled), confidence)


def agreement(canary: Sequence[str | None], stable: Sequence[str | None],
              confidence: float = CONFIDENCE) -> Estimate:
    """The share of examples both revisions answered with the same readable label."""
    if len(canary) != len(stable):
        raise ValueError(f"{len(canary)} canary answers for {len(stable)} stable answers")
    same = sum(1 for c, s in zip(canary, stable, strict=True) if c is not None and c == s)
    return proportion(same, len(canary), confidence)


def _f1(precision: float, recall: float) -> float:
    return 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0


def macro(measure: Measure, answers: Sequence[Answer], confidence: float = CONFIDENCE) -> Estimate:
    """Macro precision, recall or F1 over the labels expected or predicted (a label never predicted has
    precision 0, one never expected recall 0, as scikit-learn counts them with zero_division=0)."""
    labelled = _labelled(answers)
    labels = sorted({a.label for a in labelled if a.label is not None}
                    | {a.predicted for a in labelled if a.predicted is not None})
    if not labels:
        return Estimate(0.0, 0.0, 1.0, 0)
    intervals = len(labels) * (2 if measure is Measure.MACRO_F1 else 1)
    each = 1.0 - (1.0 - confidence) / intervals
    values, lows, highs = [], [], []
    for label in labels:
        hits = sum(1 for a in labelled if a.label == label and a.predicted == label)
        precision = proportion(hits, sum(1 for a in labelled if a.predicted == label), each)
        recall = proportion(hits, sum(1 for a in labelled if a.label == label), each)
        if measure is Measure.MACRO_PRECISION:
            chosen = precision
        elif measure is Measure.MACRO_RECALL:
            chosen = recall
        elif measure is Measure.MACRO_F1:
            chosen = Estimate(_f1(precision.value, recall.value), _f1(precision.low, recall.low),
                              _f1(precision.high, recall.high), len(labelled))
        else:
            raise ValueError(f"{measure} is not a macro measure")
        values.append(chosen.value)
        lows.append(chosen.low)
        highs.append(chosen.high)
    count = len(labels)
    return Estimate(sum(values) / count, sum(lows) / count, sum(highs) / count, len(labelled))


def measure_of(measure: Measure, answers: Sequence[Answer], confidence: float = CONFIDENCE) -> Estimate:
    """The estimate of a measure that needs labels (accuracy or a macro measure)."""
    if measure is Measure.ACCURACY:
        return accuracy(answers, confidence)
    if measure is Measure.AGREEMENT:
        raise ValueError("agreement compares two revisions: use agreement()")
    return macro(measure, answers, confidence)


def paired_difference(measure: Measure, canary: Sequence[Answer], stable: Sequence[Answer],
                      confidence: float = CONFIDENCE) -> Estimate:
    """canary - stable on the same examples, in the same order, with its interval at `confidence`."""
    if len(canary) != len(stable):
        raise ValueError(f"{len(canary)} canary answers for {len(stable)} stable answers")
    half = 1.0 - (1.0 - confidence) / 2
    if measure is not Measure.ACCURACY:
        ours, theirs = measure_of(measure, canary, half), measure_of(measure, stable, half)
        return Estimate(ours.value - theirs.value, ours.low - theirs.high, ours.high - theirs.low, len(canary))
    examples = len(_labelled(canary))
    _labelled(stable)
    canary_only = sum(1 for c, s in zip(canary, stable, strict=True)
                      if c.predicted == c.label and s.predicted != s.label)
    stable_only = sum(1 for c, s in zip(canary, stable, strict=True)
                      if c.predicted != c.label and s.predicted == s.label)
    discordant = canary_only + stable_only
    rate_low, rate_high = exact_interval(discordant, examples, half)
    share_low, share_high = exact_interval(canary_only, discordant, half)
    # canary - stable = rate * (2 * share - 1): linear in each, so its bounds are at the corners.
    low_lean, high_lean = 2 * share_low - 1, 2 * share_high - 1
    low = low_lean * (rate_high if low_lean < 0 else rate_low)
    high = high_lean * (rate_high if high_lean > 0 else rate_low)
    value = (canary_only - stable_only) / examples if examples else 0.0
    return Estimate(value, low, high, examples)


def judge_estimate(name: str, estimate: Estimate, bounds: Bounds, min_examples: int, *,
                   relative: bool = False, stable: Estimate | None = None) -> Judgement:
    """The verdict of one golden-set measurement: Failed or Successful only when the interval says so."""
    what = f"{name} - stable" if relative else name
    if estimate.examples < max(min_examples, 1):
        return Judgement(MeasurementVerdict.INCONCLUSIVE,
                         f"{what}: {estimate.examples} examples, fewer than minRequests {min_examples}")
    text = (f"{what} = {estimate.value:.4g} over {estimate.examples} examples "
            f"(95 % interval {estimate.low:.4g}..{estimate.high:.4g})")
    if stable is not None:
        text += f", stable {stable.value:.4g}"
    verdict, bound = compare_interval(estimate.low, estimate.high, bounds.min, bounds.max)
    if verdict is MeasurementVerdict.FAILED:
        side = "above max" if bound == bounds.max else "below min"
        return Judgement(verdict, f"{text}, {side} {bound:g}", bound)
    if verdict is MeasurementVerdict.SUCCESSFUL:
        return Judgement(verdict, f"{text}, within bounds")
    return Judgement(verdict, f"{text}, not yet decisive against {bound:g}", bound)

