"""The golden-set measures: their values as scikit-learn computes them, intervals that cover the true
value at least 95 % of the time, and verdicts that never pass or fail on too few examples."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import binom
from sklearn.metrics import precision_recall_fscore_support

from modeldeploy.api.rollout import MeasurementVerdict
from modeldeploy.api.spec import GoldenSetMeasure
from modeldeploy.canary.quality import (
    Answer,
    LabelTally,
    PairedTally,
    Tally,
    accuracy,
    agreement,
    confusion,
    difference,
    judge_estimate,
    macro,
    pair,
    tally,
)
from modeldeploy.canary.verdicts import Bounds

LABELS = ("setosa", "versicolor", "virginica")


def answers(expected: list[str], predicted: list[str | None]) -> list[Answer]:
    return [Answer(label, guess) for label, guess in zip(expected, predicted, strict=True)]


def iris_like(examples_per_label: int, wrong_every: int = 0, rng: np.random.Generator | None = None) -> list[Answer]:
    """Examples of the three labels; every `wrong_every`-th answered with the next label."""
    expected = [label for label in LABELS for _ in range(examples_per_label)]
    predicted: list[str | None] = []
    for i, label in enumerate(expected):
        wrong = wrong_every and i % wrong_every == 0
        predicted.append(LABELS[(LABELS.index(label) + 1) % 3] if wrong else label)
    return answers(expected, predicted)


def test_twenty_examples_all_right_cannot_show_an_accuracy_of_ninety_percent() -> None:
    estimate = accuracy(tally(iris_like(7)[:20]))

    assert estimate.value == 1.0 and estimate.examples == 20
    assert estimate.low == pytest.approx(0.8316, abs=1e-4)  # Clopper-Pearson, 20 of 20
    judged = judge_estimate("accuracy", estimate, Bounds(min=0.9), min_examples=10)
    assert judged.verdict is MeasurementVerdict.INCONCLUSIVE
    assert "20 examples" in judged.message and "not yet decisive against 0.9" in judged.message


def test_a_third_of_the_answers_wrong_fails_an_accuracy_of_ninety_percent_naming_value_interval_and_bound() -> None:
    judged = judge_estimate("accuracy", accuracy(tally(iris_like(50, wrong_every=3))), Bounds(min=0.9), min_examples=10)

    assert judged.verdict is MeasurementVerdict.FAILED and judged.bound == 0.9
    assert judged.message.startswith("accuracy = 0.6667 over 150 examples (95 % interval 0.5")
    assert judged.message.endswith("below min 0.9")


def test_fewer_examples_than_min_requests_is_inconclusive_whatever_the_answers() -> None:
    few = accuracy(tally(iris_like(50, wrong_every=1)[:5]))
    judged = judge_estimate("accuracy", few, Bounds(min=0.9), min_examples=10)

    assert judged.verdict is MeasurementVerdict.INCONCLUSIVE
    assert judged.message == "accuracy: 5 examples, fewer than minRequests 10"


def test_an_unreadable_answer_is_wrong() -> None:
    counts = tally(answers(["setosa", "setosa", "virginica"], ["setosa", None, "virginica"]))
    estimate = accuracy(counts)

    assert estimate.value == pytest.approx(2 / 3) and counts.errors == 1


@pytest.mark.parametrize("measure", [GoldenSetMeasure.MACRO_PRECISION, GoldenSetMeasure.MACRO_RECALL,
                                     GoldenSetMeasure.MACRO_F1])
def test_macro_values_are_scikit_learns_with_zero_division_zero(measure: GoldenSetMeasure) -> None:
    rng = np.random.default_rng(7)
    expected = [str(rng.choice(LABELS)) for _ in range(300)]
    predicted: list[str | None] = [e if rng.random() < 0.8 else str(rng.choice([*LABELS, "other"])) for e in expected]
    predicted[:5] = [None] * 5  # unreadable: wrong for its label, predicted for no label
    ours = macro(measure, tally(answers(expected, predicted)))

    truth = expected
    guesses = [p if p is not None else "<unreadable>" for p in predicted]
    labels = sorted(set(truth) | {p for p in predicted if p is not None})
    precision, recall, f1, _ = precision_recall_fscore_support(truth, guesses, labels=labels, average="macro",
                                                               zero_division=0)
    expected_value = {GoldenSetMeasure.MACRO_PRECISION: precision, GoldenSetMeasure.MACRO_RECALL: recall,
                      GoldenSetMeasure.MACRO_F1: f1}[measure]
    assert ours.value == pytest.approx(float(expected_value))
    assert ours.low <= ours.value <= ours.high and ours.examples == 300


def test_a_perfect_model_on_twenty_examples_does_not_pass_a_macro_f1_of_ninety_percent() -> None:
    estimate = macro(GoldenSetMeasure.MACRO_F1, tally(iris_like(7)[:20]))

    assert estimate.value == 1.0 and estimate.high == 1.0 and estimate.low < 0.9
    assert judge_estimate("f1", estimate, Bounds(min=0.9), 1).verdict is MeasurementVerdict.INCONCLUSIVE
    assert judge_estimate("f1", macro(GoldenSetMeasure.MACRO_F1, tally(iris_like(400))), Bounds(min=0.9), 1).verdict \
        is MeasurementVerdict.SUCCESSFUL


@pytest.mark.parametrize(("examples", "truth"), [(20, 0.9), (120, 0.85), (150, 0.97), (1000, 0.98)])
def test_the_accuracy_interval_covers_the_true_accuracy_at_least_95_percent_of_the_time(examples: int,
                                                                                     truth: float) -> None:
    # Exactly: the probability of each count of right answers, summed where the interval holds the truth.
    covered = 0.0
    for right in range(examples + 1):
        estimate = accuracy(Tally(examples, labels={"a": LabelTally(examples, right, right)}))
        if estimate.low <= truth <= estimate.high:
            covered += float(binom.pmf(right, examples, truth))
    assert covered >= 0.95


def test_the_macro_and_paired_intervals_cover_the_true_value_at_least_95_percent_of_the_time() -> None:
    rng = np.random.default_rng(2026)
    recalls = differences = 0
    runs = 1000
    for _ in range(runs):
        expected = [LABELS[i] for i in rng.integers(0, 3, size=120)]
        # Each label answered right with probability 0.85 by the canary and 0.90 by stable, independently.
        canary = answers(expected, [e if d < 0.85 else "other" for e, d in zip(expected, rng.random(120), strict=True)])
        stable = answers(expected, [e if d < 0.90 else "other" for e, d in zip(expected, rng.random(120), strict=True)])
        recall = macro(GoldenSetMeasure.MACRO_RECALL, tally(canary))
        change = difference(GoldenSetMeasure.ACCURACY, tally(canary), tally(stable), pair(canary, stable))
        recalls += recall.low <= 0.85 <= recall.high
        differences += change.low <= -0.05 <= change.high

    assert recalls / runs >= 0.95 and differences / runs >= 0.95


def test_ten_points_less_accurate_than_stable_fails_at_most_two_points_worse() -> None:
    stable = iris_like(50, wrong_every=30)   # 5 wrong of 150
    canary = list(stable)
    flipped = 0
    for i, answer in enumerate(canary):
        if answer.predicted == answer.label and flipped < 15:
            canary[i] = Answer(answer.label, "wrong")
            flipped += 1
    change = difference(GoldenSetMeasure.ACCURACY, tally(canary), tally(stable), pair(canary, stable))

    assert change.value == pytest.approx(-0.1) and change.high < -0.02
    judged = judge_estimate("accuracy", change, Bounds(min=-0.02), 10, relative=True,
                            stable=accuracy(tally(stable)))
    assert judged.verdict is MeasurementVerdict.FAILED
    assert judged.message.startswith("accuracy (canary - stable) = -0.1 over 150 examples")
    assert ", stable 0.9667, below min -0.02" in judged.message


def test_the_same_answers_as_stable_pass_two_points_worse_only_with_enough_examples() -> None:
    few, many = iris_like(50, wrong_every=20), iris_like(700, wrong_every=20)

    def same(answered: list[Answer]) -> MeasurementVerdict:
        change = difference(GoldenSetMeasure.ACCURACY, tally(answered), tally(answered), pair(answered, answered))
        return judge_estimate("accuracy", change, Bounds(min=-0.02), 10, relative=True).verdict

    assert same(few) is MeasurementVerdict.INCONCLUSIVE
    assert same(many) is MeasurementVerdict.SUCCESSFUL


def test_a_macro_measure_relative_to_stable_spans_both_intervals() -> None:
    stable, canary = iris_like(100), iris_like(100, wrong_every=4)
    change = difference(GoldenSetMeasure.MACRO_RECALL, tally(canary), tally(stable), pair(canary, stable))

    assert change.value == pytest.approx(-0.25)
    assert change.low < -0.25 < change.high < 0


def test_agreement_needs_no_labels_and_counts_unreadable_answers_as_disagreeing() -> None:
    canary = [Answer(None, p) for p in ["a"] * 980 + ["b"] * 10 + [None] * 10]
    stable = [Answer(None, "a")] * 1000
    estimate = agreement(pair(canary, stable))

    assert (estimate.value, estimate.examples) == (0.98, 1000)
    assert judge_estimate("agreement", estimate, Bounds(min=0.95), 10).verdict is MeasurementVerdict.SUCCESSFUL
    assert judge_estimate("agreement", estimate, Bounds(min=0.98), 10).verdict is MeasurementVerdict.INCONCLUSIVE


def test_the_counts_name_each_labels_most_common_wrong_answer_and_round_trip() -> None:
    counts = tally(answers(
        ["cat", "cat", "cat", "cat", "dog", "dog", "owl"],
        ["cat", "dog", "owl", "dog", "dog", None, "cat"],
    ))

    assert counts == Tally(7, errors=1, labels={
        "cat": LabelTally(expected=4, predicted=2, hits=1, confused_with="dog", confused=2),
        "dog": LabelTally(expected=2, predicted=3, hits=1),
        "owl": LabelTally(expected=1, predicted=1, hits=0, confused_with="cat", confused=1)})
    assert Tally.from_dict(counts.to_dict()) == counts
    paired = pair(answers(["cat", "dog"], ["cat", "cat"]), answers(["cat", "dog"], ["dog", "dog"]))
    assert paired == PairedTally(examples=2, canary_only=1, stable_only=1, agreeing=0)
    assert PairedTally.from_dict(paired.to_dict()) == paired


def test_measures_that_need_labels_refuse_examples_without_one() -> None:
    with pytest.raises(ValueError, match="1 of 2 examples have no label"):
        accuracy(tally([Answer("cat", "cat"), Answer(None, "cat")]))


def test_the_confusion_quotes_the_worst_label_first_with_its_most_common_wrong_answer() -> None:
    answers = ([Answer("setosa", "setosa")] * 10 + [Answer("virginica", "versicolor")] * 4
               + [Answer("virginica", "virginica")] * 6 + [Answer("versicolor", None)])

    assert confusion(tally(answers)) == ("versicolor 0/1 right, virginica 6/10 right (4 as versicolor), "
                                         "setosa 10/10 right, 1 of 21 answers unreadable or not 2xx")
