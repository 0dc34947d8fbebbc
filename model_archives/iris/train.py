"""Train the iris classifier and write everything one version's archive needs into a directory.

    python model_archives/iris/train.py --out DIR --version v1|v2|faulty|slow|swapped
        [--failure-fraction F] [--latency-ms MS] [--swapped-fraction F]

Uses the iris data scikit-learn ships (no download), trains in a second on one CPU thread with
fixed seeds and a fixed PYTHONHASHSEED (the same version always gives the same bytes), and writes:

    DIR/model.pt             TorchScript (normalisation included: the model takes raw centimetres)
    DIR/handler.py           the TorchServe handler
    DIR/model-config.yaml    TorchServe model config (faulty: failure_fraction 0.5; slow: latency_ms 200;
                             swapped: swapped_fraction 0.34)
    DIR/index_to_name.json   class names (an extra file)
    DIR/archive.json         the archive inputs, and a `modeldeploy archive build` command line

v1 and v2 are both accurate but differ (seed, width, epochs); faulty has v2's weights and a
handler configuration that fails half of the requests (--failure-fraction chooses another share),
slow has v2's weights and adds 200 ms to every batch (--latency-ms chooses another delay), swapped
has v2's weights and answers a third of the rows with another class's label, 200 OK
(--swapped-fraction chooses another share). The golden set its canaries are judged on comes from
golden_set.py.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import sys
from dataclasses import dataclass

import torch
from sklearn.datasets import load_iris

HERE = os.path.dirname(os.path.abspath(__file__))
LABELS = ["setosa", "versicolor", "virginica"]


@dataclass(frozen=True)
class Recipe:
    """How one version is trained, and what it ships."""

    model_version: str
    seed: int
    hidden: int
    epochs: int
    learning_rate: float
    failure_fraction: float = 0.0
    latency_ms: int = 0
    swapped_fraction: float = 0.0


RECIPES = {
    "v1": Recipe(model_version="1", seed=1, hidden=8, epochs=150, learning_rate=0.05),
    "v2": Recipe(model_version="2", seed=2, hidden=16, epochs=300, learning_rate=0.03),
    # The same training as v2 (identical weights); only the handler configuration differs.
    "faulty": Recipe(model_version="2-faulty", seed=2, hidden=16, epochs=300, learning_rate=0.03, failure_fraction=0.5),
    "slow": Recipe(model_version="2-slow", seed=2, hidden=16, epochs=300, learning_rate=0.03, latency_ms=200),
    "swapped": Recipe(model_version="2-swapped", seed=2, hidden=16, epochs=300, learning_rate=0.03,
                      swapped_fraction=0.34),
}


class IrisNet(torch.nn.Module):
    """Standardise the four measurements, then a small MLP to three logits."""

    def __init__(self, mean: torch.Tensor, std: torch.Tensor, hidden: int) -> None:
        super().__init__()
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)
        self.layers = torch.nn.Sequential(torch.nn.Linear(4, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 3))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.layers((features - self.mean) / self.std)


def train(recipe: Recipe) -> tuple[torch.jit.ScriptModule, float]:
    """Train deterministically; return the scripted model and its training accuracy."""
    torch.manual_seed(recipe.seed)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    iris = load_iris()
    features = torch.tensor(iris.data, dtype=torch.float32)
    targets = torch.tensor(iris.target, dtype=torch.long)
    model = IrisNet(features.mean(dim=0), features.std(dim=0), recipe.hidden)
    optimiser = torch.optim.Adam(model.parameters(), lr=recipe.learning_rate)
    loss_function = torch.nn.CrossEntropyLoss()
    for _ in range(recipe.epochs):
        optimiser.zero_grad()
        loss = loss_function(model(features), targets)
        loss.backward()
        optimiser.step()
    model.eval()
    with torch.no_grad():
        accuracy = float((model(features).argmax(dim=1) == targets).float().mean())
    return torch.jit.script(model), accuracy


def write_version(out: str, version: str, failure_fraction: float | None = None,
                  latency_ms: int | None = None, swapped_fraction: float | None = None) -> dict[str, object]:
    """Write one version's archive inputs into out; return the archive description.

    `failure_fraction`, `latency_ms` and `swapped_fraction` override the recipe's handler settings
    (model-config.yaml).
    """
    recipe = RECIPES[version]
    if failure_fraction is not None:
        recipe = dataclasses.replace(recipe, failure_fraction=failure_fraction)
    if latency_ms is not None:
        recipe = dataclasses.replace(recipe, latency_ms=latency_ms)
    if swapped_fraction is not None:
        recipe = dataclasses.replace(recipe, swapped_fraction=swapped_fraction)
    os.makedirs(out, exist_ok=True)
    scripted, accuracy = train(recipe)
    torch.jit.save(scripted, os.path.join(out, "model.pt"))
    shutil.copyfile(os.path.join(HERE, "handler.py"), os.path.join(out, "handler.py"))
    with open(os.path.join(HERE, "model-config.yaml"), encoding="utf-8") as handle:
        config = handle.read()
    config = config.replace("failure_fraction: 0.0", f"failure_fraction: {recipe.failure_fraction}")
    config = config.replace("latency_ms: 0", f"latency_ms: {recipe.latency_ms}")
    config = config.replace("swapped_fraction: 0.0", f"swapped_fraction: {recipe.swapped_fraction}")
    with open(os.path.join(out, "model-config.yaml"), "w", encoding="utf-8") as handle:
        handle.write(config)
    with open(os.path.join(out, "index_to_name.json"), "w", encoding="utf-8") as handle:
        json.dump({str(index): label for index, label in enumerate(LABELS)}, handle, indent=2, sort_keys=True)
    description: dict[str, object] = {
        "modelName": "iris",
        "version": recipe.model_version,
        "serializedFile": "model.pt",
        "handler": "handler.py",
        "extraFiles": ["index_to_name.json"],
        "configFile": "model-config.yaml",
        "trainingAccuracy": round(accuracy, 4),
        "failureFraction": recipe.failure_fraction,
        "latencyMs": recipe.latency_ms,
        "swappedFraction": recipe.swapped_fraction,
        "command": [
            "modeldeploy",
            "archive",
            "build",
            "--model-name",
            "iris",
            "--version",
            recipe.model_version,
            "--serialized-file",
            os.path.join(out, "model.pt"),
            "--handler",
            os.path.join(out, "handler.py"),
            "--extra-files",
            os.path.join(out, "index_to_name.json"),
            "--config-file",
            os.path.join(out, "model-config.yaml"),
            "--archive-format",
            "zip-store",
            "--store",
            "STORE",
        ],
    }
    with open(os.path.join(out, "archive.json"), "w", encoding="utf-8") as handle:
        json.dump(description, handle, indent=2, sort_keys=True)
    return description


def main(argv: list[str] | None = None) -> int:
    if os.environ.get("PYTHONHASHSEED") != "0":
        # TorchScript writes some class attributes in set order: fix string hashing for identical bytes.
        os.environ["PYTHONHASHSEED"] = "0"
        os.execv(sys.executable, [sys.executable, os.path.abspath(__file__), *(sys.argv[1:] if argv is None else argv)])
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="directory to write into")
    parser.add_argument("--version", required=True, choices=sorted(RECIPES))
    parser.add_argument("--failure-fraction", type=float, help="share of requests that fail (model-config.yaml)")
    parser.add_argument("--latency-ms", type=int, help="milliseconds added to every batch (model-config.yaml)")
    parser.add_argument("--swapped-fraction", type=float,
                        help="share of rows answered with another class's label (model-config.yaml)")
    args = parser.parse_args(argv)
    description = write_version(args.out, args.version, args.failure_fraction, args.latency_ms,
                                args.swapped_fraction)
    print(json.dumps(description, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
