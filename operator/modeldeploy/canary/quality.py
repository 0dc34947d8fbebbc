"""The quality of a model's answers on a golden set, judged with confidence like the error rate.

A golden set is examples with the label a good model gives them. Sending them to a revision's pods
gives one `Answer` per example: the label expected (None when the set has none) and the label read from
the response (None when the response was not 2xx or its label could not be read: wrong, and an error).
The answers are counted where they are collected (`tally`, `pair`); the verdicts need only the counts,
so a measurement's result stays small whatever the size of the set.

- `accuracy` and `agreement` (the share of examples where canary and stable predict the same label;
  it needs no labels) are proportions: the exact binomial (Clopper-Pearson) interval at 95 %.
- `macro-precision`, `macro-recall` and `macro-f1` average one value per label. Each label's precision
  and recall is a proportion with its own exact interval, at the confidence that makes them hold
  together (Bonferroni: 1 - 0.05/k for k intervals), so the averages of the bounds bound the average.
  F1 grows with precision and with recall, so its bounds are the F1 of the bounds. A bootstrap would
  be narrower, and wrong where it matters: with 20 examples all answered right every resample agrees,
  and its interval [1, 1] would pass any bound on 20 examples.
- `relativeTo: stable` judges canary - stable on the same examples. For accuracy it is paired: only the
  examples where one of the two is right and the other wrong (the discordant pairs of McNemar's test)
  say anything about the difference; its interval combines the exact intervals of the share of
  discordant examples and of the canary's share of them, each at 97.5 %. For the macro measures it
  spans canary's and stable's intervals, each at 97.5 %.

A measure is Failed only when its whole interval lies outside the bounds, Successful only when inside,
Inconclusive in between: too few examples for the bound asked is never a pass, and never a rollback.
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

from modeldeploy.api.spec import GoldenSetMeasure
from modeldeploy.canary.verdicts import Bounds, Judgement, Sample, exact_interval, judge

CONFIDENCE = 0.95
MAX_LABELS = 100
"""The most labels a golden set may name: the counts of each travel in a measurement's result."""


@dataclasses.dataclass(frozen=True)
class Answer:
    """One example as a revision answered it: the label expected and the label it predicted."""

    label: str | None
    predicted: str | None


@dataclasses.dataclass(frozen=True)
class LabelTally:
    """One label's counts: examples expecting it, answers predicting it, both (hits), and the wrong
    answer given most often to its examples (ties: the first label) with how often."""

    expected: int = 0
    predicted: int = 0
    hits: int = 0
    confused_with: str | None = None
    confused: int = 0

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"expected": self.expected, "predicted": self.predicted, "hits": self.hits}
        if self.confused_with is not None:
            out["confusedWith"], out["confused"] = self.confused_with, self.confused
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LabelTally:
        confused_with = data.get("confusedWith")
        return cls(int(data.get("expected", 0)), int(data.get("predicted", 0)), int(data.get("hits", 0)),
                   str(confused_with) if confused_with is not None else None, int(data.get("confused", 0)))


@dataclasses.dataclass(frozen=True)
class Tally:
    """One revision's answers to a golden set, counted: `examples`, those without a label, those
    unreadable (`errors`), and per label (labelled examples only)."""

    examples: int = 0
    unlabelled: int = 0
    errors: int = 0
    labels: Mapping[str, LabelTally] = dataclasses.field(default_factory=dict)

    @property
    def right(self) -> int:
        return sum(label.hits for label in self.labels.values())

    def to_dict(self) -> dict[str, Any]:
        return {"examples": self.examples, "unlabelled": self.unlabelled, "errors": self.errors,
                "labels": {name: self.labels[name].to_dict() for name in sorted(self.labels)}}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Tally:
        labels = data.get("labels") or {}
        return cls(int(data.get("examples", 0)), int(data.get("unlabelled", 0)), int(data.get("errors", 0)),
                   {str(name): LabelTally.from_dict(counts) for name, counts in labels.items()})


@dataclasses.dataclass(frozen=True)
class PairedTally:
    """Canary's and stable's answers to the same examples, side by side: right by the canary only, right
    by stable only (labelled examples), and answered with the same readable label by both."""

    examples: int = 0
    canary_only: int = 0
    stable_only: int = 0
    agreeing: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"examples": self.examples, "canaryOnly": self.canary_only, "stableOnly": self.stable_only,
                "agreeing": self.agreeing}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PairedTally:
        return cls(int(data.get("examples", 0)), int(data.get("canaryOnly", 0)), int(data.get("stableOnly", 0)),
                   int(data.get("agreeing", 0)))


class Counter:
    """Counts answers as they come, one revision's (`add`) or canary's and stable's side by side
    (`add_pair`); memory grows with the labels, never with the examples."""

    def __init__(self) -> None:
        self.examples = self.unlabelled = self.errors = 0
        self.expected: collections.Counter[str] = collections.Counter()
        self.predicted: collections.Counter[str] = collections.Counter()
        self.hits: collections.Counter[str] = collections.Counter()
        self.wrong: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)

    def add(self, answer: Answer) -> None:
        self.examples += 1
        self.errors += answer.predicted is None
        if answer.label is None:
            self.unlabelled += 1
            return
        self.expected[answer.label] += 1
        if answer.predicted is None:
            return
        self.predicted[answer.predicted] += 1
        if answer.predicted == answer.label:
            self.hits[answer.label] += 1
        else:
            self.wrong[answer.label][answer.predicted] += 1
        if len(self.expected.keys() | self.predicted.keys()) > MAX_LABELS:
            raise ValueError(f"more than {MAX_LABELS} labels expected or predicted")

    def tally(self) -> Tally:
        labels = {}
        for name in sorted(self.expected.keys() | self.predicted.keys()):
            mistakes = sorted((-count, other) for other, count in self.wrong.get(name, collections.Counter()).items())
            confused_with, confused = (mistakes[0][1], -mistakes[0][0]) if mistakes else (None, 0)
            labels[name] = LabelTally(self.expected[name], self.predicted[name], self.hits[name], confused_with,
                                      confused)
        return Tally(self.examples, self.unlabelled, self.errors, labels)


class PairCounter:
    """Counts canary's and stable's answers to the same examples as they come."""

    def __init__(self) -> None:
        self.canary, self.stable = Counter(), Counter()
        self.examples = self.canary_only = self.stable_only = self.agreeing = 0

    def add(self, ours: Answer, theirs: Answer) -> None:
        self.canary.add(ours)
        self.stable.add(theirs)
        self.examples += 1
        self.agreeing += ours.predicted is not None and ours.predicted == theirs.predicted
        if ours.label is None:
            return
        ours_right, theirs_right = ours.predicted == ours.label, theirs.predicted == theirs.label
        self.canary_only += ours_right and not theirs_right
        self.stable_only += theirs_right and not ours_right

    def paired(self) -> PairedTally:
        return PairedTally(self.examples, self.canary_only, self.stable_only, self.agreeing)


def tally(answers: Iterable[Answer]) -> Tally:
    """Count one revision's answers (more than MAX_LABELS labels: ValueError)."""
    counter = Counter()
    for answer in answers:
        counter.add(answer)
    return counter.tally()


def pair(canary: Iterable[Answer], stable: Iterable[Answer]) -> PairedTally:
    """Count canary's and stable's answers to the same examples, in the same order."""
    counter = PairCounter()
    for ours, theirs in zip(canary, stable, strict=True):
        counter.add(ours, theirs)
    return counter.paired()


@dataclasses.dataclass(frozen=True)
class Estimate:
    """A measure's value over `examples`, with its interval."""

    value: float
    low: float
    high: float
    examples: int


def proportion(successes: int, trials: int, confidence: float = CONFIDENCE) -> Estimate:
    """successes/trials with its exact interval (no trials: value 0 and the interval 0..1)."""
    low, high = exact_interval(successes, trials, confidence)
    return Estimate(successes / trials if trials else 0.0, low, high, trials)


def _labelled(counts: Tally) -> int:
    if counts.unlabelled:
        raise ValueError(f"{counts.unlabelled} of {counts.examples} examples have no label")
    return counts.examples


def accuracy(counts: Tally, confidence: float = CONFIDENCE) -> Estimate:
    """The share of examples answered with their label."""
    return proportion(counts.right, _labelled(counts), confidence)


def agreement(paired: PairedTally, confidence: float = CONFIDENCE) -> Estimate:
    """The share of examples both revisions answered with the same readable label."""
    return proportion(paired.agreeing, paired.examples, confidence)


def _f1(precision: float, recall: float) -> float:
    return 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0


def macro(measure: GoldenSetMeasure, counts: Tally, confidence: float = CONFIDENCE) -> Estimate:
    """Macro precision, recall or F1 over the labels expected or predicted (a label never predicted has
    precision 0, one never expected recall 0, as scikit-learn counts them with zero_division=0)."""
    examples = _labelled(counts)
    if not counts.labels:
        return Estimate(0.0, 0.0, 1.0, examples)
    intervals = len(counts.labels) * (2 if measure is GoldenSetMeasure.MACRO_F1 else 1)
    each = 1.0 - (1.0 - confidence) / intervals
    values, lows, highs = [], [], []
    for label in counts.labels.values():
        precision = proportion(label.hits, label.predicted, each)
        recall = proportion(label.hits, label.expected, each)
        if measure is GoldenSetMeasure.MACRO_PRECISION:
            chosen = precision
        elif measure is GoldenSetMeasure.MACRO_RECALL:
            chosen = recall
        elif measure is GoldenSetMeasure.MACRO_F1:
            chosen = Estimate(_f1(precision.value, recall.value), _f1(precision.low, recall.low),
                              _f1(precision.high, recall.high), examples)
        else:
            raise ValueError(f"{measure} is not a macro measure")
        values.append(chosen.value)
        lows.append(chosen.low)
        highs.append(chosen.high)
    count = len(counts.labels)
    return Estimate(sum(values) / count, sum(lows) / count, sum(highs) / count, examples)


def estimate(measure: GoldenSetMeasure, counts: Tally, confidence: float = CONFIDENCE) -> Estimate:
    """The estimate of a measure of one revision's answers against the labels."""
    if measure is GoldenSetMeasure.ACCURACY:
        return accuracy(counts, confidence)
    if measure is GoldenSetMeasure.AGREEMENT:
        raise ValueError("agreement compares two revisions: see agreement()")
    return macro(measure, counts, confidence)


def difference(measure: GoldenSetMeasure, canary: Tally, stable: Tally, paired: PairedTally,
               confidence: float = CONFIDENCE) -> Estimate:
    """canary - stable on the same examples, with its interval at `confidence`."""
    half = 1.0 - (1.0 - confidence) / 2
    if measure is not GoldenSetMeasure.ACCURACY:
        ours, theirs = estimate(measure, canary, half), estimate(measure, stable, half)
        return Estimate(ours.value - theirs.value, ours.low - theirs.high, ours.high - theirs.low, paired.examples)
    examples = _labelled(canary)
    discordant = paired.canary_only + paired.stable_only
    rate_low, rate_high = exact_interval(discordant, examples, half)
    share_low, share_high = exact_interval(paired.canary_only, discordant, half)
    # canary - stable = discordant rate * (2 * canary's share - 1): linear in each, bounded at the corners.
    low_lean, high_lean = 2 * share_low - 1, 2 * share_high - 1
    low = low_lean * (rate_high if low_lean < 0 else rate_low)
    high = high_lean * (rate_high if high_lean > 0 else rate_low)
    value = (paired.canary_only - paired.stable_only) / examples if examples else 0.0
    return Estimate(value, low, high, examples)


def sample_of(found: Estimate, detail: str = "") -> Sample:
    """The estimate as a measurement's sample: its value, its examples, its interval (and what its
    verdict quotes after itself)."""
    return Sample(found.value, found.examples, interval=(found.low, found.high), unit="examples", detail=detail)


LABELS_QUOTED = 10
"""How many labels a verdict quotes the counts of (the worst first)."""


def confusion(counts: Tally, limit: int = LABELS_QUOTED) -> str:
    """Per label, worst recall first: right of expected, and the wrong label given most often."""
    parts: list[str] = []
    ranked = sorted(counts.labels.items(), key=lambda item: (item[1].hits / item[1].expected if item[1].expected
                                                             else 1.0, item[0]))
    for name, label in ranked[:limit]:
        if not label.expected:
            parts.append(f"{name} predicted {label.predicted}, never expected")
            continue
        text = f"{name} {label.hits}/{label.expected} right"
        if label.confused_with is not None and label.confused:
            text += f" ({label.confused} as {label.confused_with})"
        parts.append(text)
    if len(ranked) > limit:
        parts.append(f"{len(ranked) - limit} more labels")
    if counts.errors:
        parts.append(f"{counts.errors} of {counts.examples} answers unreadable or not 2xx")
    return ", ".join(parts)


def judge_estimate(name: str, found: Estimate, bounds: Bounds, min_examples: int, *,
                   relative: bool = False, stable: Estimate | None = None) -> Judgement:
    """The verdict of one golden-set measurement, judged as any sample with its interval is; a
    comparison with stable is named so, and quotes stable's own value."""
    return judge(f"{name} (canary - stable)" if relative else name, sample_of(found), bounds, max(min_examples, 1),
                 beside=f", stable {stable.value:.4g}" if stable is not None else "")
