"""Write the iris golden set: labelled examples a canary's answers are judged on.

    python model_archives/iris/golden_set.py --out DIR/golden.jsonl [--examples 1000] [--seed 0]

JSON Lines, one example a line, `{"input": {"data": [[4 numbers]]}, "label": "setosa"}`: a row of
scikit-learn's bundled iris data (no download), drawn with replacement, with Gaussian noise of 5 % of
each measurement's standard deviation, rounded to 0.01 cm; the label is the row's species. 1,000
examples let agreement of 0.98 or better be shown at 95 % (the 150 rows alone cannot), and the same
seed always writes the same bytes. Read the predicted label at `$.labels[0]`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import torch
from sklearn.datasets import load_iris

LABELS = ["setosa", "versicolor", "virginica"]
NOISE = 0.05
"""The noise's standard deviation, as a share of each measurement's."""


def examples(count: int, seed: int) -> list[dict[str, object]]:
    """`count` labelled examples drawn from the iris data with noise, the same for the same seed."""
    iris = load_iris()
    features = torch.tensor(iris.data, dtype=torch.float64)
    generator = torch.Generator().manual_seed(seed)
    rows = torch.randint(0, len(features), (count,), generator=generator)
    noisy = features[rows] + torch.randn(count, 4, generator=generator, dtype=torch.float64) * features.std(dim=0) * NOISE
    return [{"input": {"data": [[round(max(float(v), 0.01), 2) for v in row]]}, "label": LABELS[int(iris.target[i])]}
            for row, i in zip(noisy, rows.tolist(), strict=True)]


def write(path: str, count: int = 1000, seed: int = 0) -> int:
    """Write the golden set to `path`; return its number of examples."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    found = examples(count, seed)
    with open(path, "w", encoding="utf-8") as handle:
        for example in found:
            handle.write(json.dumps(example, separators=(",", ":")) + "\n")
    return len(found)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="the JSON Lines file to write")
    parser.add_argument("--examples", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    print(json.dumps({"goldenSet": args.out, "examples": write(args.out, args.examples, args.seed)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
