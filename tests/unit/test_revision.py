"""Revisions change exactly when what is served changes; build keys exactly when the archive changes."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from modeldeploy.api.revision import build_key_of, canonical_json, revision_of
from modeldeploy.api.spec import parse_spec

BASE: dict[str, Any] = {
    "model": {
        "name": "iris",
        "version": "2",
        "serializedFile": {"uri": "pvc://models/iris/2/model.pt"},
        "handler": {"uri": "pvc://models/iris/handler.py"},
        "config": {"batchSize": 8},
    },
    "serving": {"replicas": 2, "resources": {"requests": {"cpu": "1"}}},
    "rollout": {"steps": [{"weight": 25, "pause": "1m"}, {"weight": 100}]},
}


def changed(path: str, value: Any) -> dict[str, Any]:
    spec = copy.deepcopy(BASE)
    target = spec
    *parents, last = path.split(".")
    for key in parents:
        target = target.setdefault(key, {})
    target[last] = value
    return spec


def revision(spec: dict[str, Any]) -> str:
    return revision_of(parse_spec(spec)).digest


def build_key(spec: dict[str, Any]) -> str:
    return build_key_of(parse_spec(spec)).digest


def test_revision_is_a_sha256_with_a_ten_character_short_form() -> None:
    digest = revision_of(parse_spec(BASE))

    assert len(digest.digest) == 64 and int(digest.digest, 16) >= 0
    assert digest.short == digest.digest[:10] == str(digest)
    assert len(build_key_of(parse_spec(BASE)).short) == 12


def test_the_same_spec_gives_the_same_revision_every_time() -> None:
    assert revision(BASE) == revision(copy.deepcopy(BASE))


def test_writing_a_default_explicitly_does_not_change_the_revision() -> None:
    explicit = changed("serving.image", "pytorch/torchserve:0.12.0-cpu")
    explicit["archive"] = {"format": "zip-store", "store": {"pvc": {"claimName": "model-store"}}}

    assert revision(explicit) == revision(BASE)


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("serving.replicas", 7),
        ("serving.networkPolicy", {"enabled": False}),
        ("rollout.steps", [{"weight": 10}, {"weight": 50}, {"weight": 100}]),
        ("rollout.analysis", {"interval": "10s", "failureLimit": 3}),
        ("rollout.progressDeadlineSeconds", 1200),
        ("model.sourceSecretRef", {"name": "rotated-credentials"}),
        ("archive.build", {"activeDeadlineSeconds": 1800, "backoffLimit": 3}),
    ],
)
def test_changes_that_do_not_change_what_is_served_keep_the_revision(path: str, value: Any) -> None:
    assert revision(changed(path, value)) == revision(BASE)


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("model.version", "3"),
        ("model.serializedFile", {"uri": "pvc://models/iris/3/model.pt"}),
        ("model.serializedFile", {"uri": "pvc://models/iris/2/model.pt", "sha256": "a" * 64}),
        ("model.handler", {"builtin": "image_classifier"}),
        ("model.extraFiles", [{"uri": "pvc://models/iris/labels.json"}]),
        ("model.configFile", {"uri": "pvc://models/iris/model-config.yaml"}),
        ("model.config", {"batchSize": 16}),
        ("archive.format", "tgz"),
        ("serving.image", "pytorch/torchserve:0.12.0-gpu"),
        ("serving.resources", {"requests": {"cpu": "2"}}),
        ("serving.port", 9080),
    ],
)
def test_changes_to_the_model_archive_or_serving_template_make_a_new_revision(path: str, value: Any) -> None:
    assert revision(changed(path, value)) != revision(BASE)


def test_runtime_config_changes_the_revision_but_not_the_build_key() -> None:
    tuned = changed("model.config", {"batchSize": 32, "maxBatchDelayMs": 5})

    assert revision(tuned) != revision(BASE)
    assert build_key(tuned) == build_key(BASE)


def test_serving_image_does_not_rebuild_the_archive() -> None:
    assert build_key(changed("serving.image", "pytorch/torchserve:0.12.0-gpu")) == build_key(BASE)


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("model.serializedFile", {"uri": "pvc://models/iris/3/model.pt"}),
        ("model.name", "iris-v2"),
        ("model.configFile", {"uri": "pvc://models/iris/model-config.yaml", "sha256": "b" * 64}),
        ("archive.format", "zip"),
        ("archive.store", {"pvc": {"claimName": "other-store"}}),
    ],
)
def test_archive_inputs_and_location_change_the_build_key(path: str, value: Any) -> None:
    assert build_key(changed(path, value)) != build_key(BASE)


def test_canonical_json_is_independent_of_key_order_and_whitespace_free() -> None:
    assert canonical_json({"b": 1, "a": [1, "é"]}) == canonical_json({"a": [1, "é"], "b": 1})
    assert canonical_json({"b": 1, "a": "é"}) == '{"a":"é","b":1}'.encode()
