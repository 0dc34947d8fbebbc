"""Real TorchServe 0.12 loads every archive format we build and answers like the TorchScript model itself."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from sklearn.datasets import load_iris

from modeldeploy.archives import FORMATS, ArchiveRequest, ArchiveResult, Source, build_archive

pytestmark = pytest.mark.torchserve


def iris_request(inputs: Path, model_name: str, version: str, archive_format: str) -> ArchiveRequest:
    return ArchiveRequest(
        model_name=model_name,
        version=version,
        serialized_file=Source(str(inputs / "model.pt")),
        handler=Source(str(inputs / "handler.py")),
        extra_files=(Source(str(inputs / "index_to_name.json")),),
        config_file=Source(str(inputs / "model-config.yaml")),
        archive_format=archive_format,  # type: ignore[arg-type]
    )


def serving_directory(root: Path, results: dict[str, ArchiveResult]) -> Path:
    """A model store for one TorchServe holding artifacts from several digest folders (symlinks to them)."""
    root.mkdir(parents=True, exist_ok=True)
    for result in results.values():
        artifact = Path(result.uri.removeprefix("file://"))
        (root / artifact.name).symlink_to(artifact)
    return root


def expected_probabilities(model_path: Path, rows: list[list[float]]) -> torch.Tensor:
    model = torch.jit.load(str(model_path), map_location="cpu")
    model.eval()
    with torch.inference_mode():
        return torch.softmax(model(torch.tensor(rows, dtype=torch.float32)), dim=1)


def iris_rows() -> tuple[list[list[float]], list[int]]:
    data = load_iris()
    return [[float(v) for v in row] for row in data.data], [int(t) for t in data.target]


def test_torchserve_serves_every_format_with_the_torchscript_models_own_predictions(
    iris_versions: dict[str, Path], tmp_path: Path, torchserve_factory: Any
) -> None:
    inputs = iris_versions["v1"]
    store = tmp_path / "store"
    results = {fmt: build_archive(iris_request(inputs, f"iris-{fmt}", "1", fmt), str(store)) for fmt in FORMATS}
    served = serving_directory(tmp_path / "serve", results)
    entries = {f"iris-{fmt}": Path(result.key).name for fmt, result in results.items()}
    server = torchserve_factory(served, entries)
    server.wait_ready(list(entries))

    rows, targets = iris_rows()
    expected = expected_probabilities(inputs / "model.pt", rows)
    for name in entries:
        status, body = server.predict(name, {"data": rows})
        assert status == 200, f"{name}: {status} {body}\n{server.log_tail()}"
        got = torch.tensor(body["probabilities"])
        assert got.shape == (150, 3)
        assert torch.allclose(got, expected, atol=1e-6), name
        assert body["labels"] == [["setosa", "versicolor", "virginica"][int(i)] for i in expected.argmax(dim=1)]
        assert body["version"] == "1"
    accuracy = sum(int(i) == t for i, t in zip(expected.argmax(dim=1), targets, strict=True)) / len(targets)
    assert accuracy > 0.95


def test_v2_differs_from_v1_and_faulty_fails_half_of_its_requests_with_5xx(
    iris_versions: dict[str, Path], tmp_path: Path, torchserve_factory: Any
) -> None:
    store = tmp_path / "store"
    results = {
        "iris-v1": build_archive(iris_request(iris_versions["v1"], "iris-v1", "1", "zip-store"), str(store)),
        "iris-v2": build_archive(iris_request(iris_versions["v2"], "iris-v2", "2", "zip-store"), str(store)),
        "iris-faulty": build_archive(
            iris_request(iris_versions["faulty"], "iris-faulty", "2-faulty", "zip-store"), str(store)
        ),
    }
    served = serving_directory(tmp_path / "serve", results)
    server = torchserve_factory(served, {name: Path(result.key).name for name, result in results.items()})
    server.wait_ready(list(results))
    rows, targets = iris_rows()

    answers = {name: server.predict(name, {"data": rows}) for name in ("iris-v1", "iris-v2")}
    v1 = torch.tensor(answers["iris-v1"][1]["probabilities"])
    v2 = torch.tensor(answers["iris-v2"][1]["probabilities"])
    assert not torch.allclose(v1, v2, atol=1e-3)
    for probabilities in (v1, v2):
        correct = sum(int(i) == t for i, t in zip(probabilities.argmax(dim=1), targets, strict=True))
        assert correct / len(targets) > 0.95
    assert (iris_versions["faulty"] / "model.pt").read_bytes() == (iris_versions["v2"] / "model.pt").read_bytes()

    statuses = [server.predict("iris-faulty", {"data": rows[:2]})[0] for _ in range(20)]
    assert statuses.count(200) == 10
    assert all(500 <= status < 600 for status in statuses if status != 200)
    assert all(server.predict("iris-v2", {"data": rows[:2]})[0] == 200 for _ in range(10))
