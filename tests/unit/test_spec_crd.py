"""The CRD (the one source of the API) and the typed spec agree: descriptions, defaults, samples, rules."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from modeldeploy import GROUP, KIND, PLURAL, VERSION
from modeldeploy.api.spec import SpecError, parse, parse_spec

REPO = Path(__file__).resolve().parents[2]
CRD_PATH = REPO / "manifests" / "crds" / "modeldeploy.dev_modeldeployments.yaml"
SAMPLES = sorted(p for p in (REPO / "manifests" / "samples").glob("*.yaml") if p.name != "kustomization.yaml")
INVALID_SPECS = sorted((REPO / "tests" / "cluster" / "invalid_specs").glob("*.yaml"))


def load_crd() -> dict[str, Any]:
    crd: dict[str, Any] = yaml.safe_load(CRD_PATH.read_text())
    return crd


def root_schema() -> dict[str, Any]:
    schema: dict[str, Any] = load_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def walk(schema: dict[str, Any], path: str = "") -> list[tuple[str, dict[str, Any]]]:
    """Every node of a structural schema with its path."""
    nodes = [(path, schema)]
    for key, child in schema.get("properties", {}).items():
        nodes.extend(walk(child, f"{path}.{key}"))
    if "items" in schema:
        nodes.extend(walk(schema["items"], f"{path}[]"))
    if isinstance(schema.get("additionalProperties"), dict):
        nodes.extend(walk(schema["additionalProperties"], f"{path}{{}}"))
    return nodes


def apply_defaults(value: Any, schema: dict[str, Any]) -> Any:
    """Structural defaulting the way the API server does it: absent fields get their default, recursively."""
    if isinstance(value, dict):
        for key, child in schema.get("properties", {}).items():
            if key not in value and "default" in child:
                value[key] = copy.deepcopy(child["default"])
            if key in value:
                apply_defaults(value[key], child)
    elif isinstance(value, list) and "items" in schema:
        for item in value:
            apply_defaults(item, schema["items"])
    return value


def fixture_header(path: Path) -> dict[str, str]:
    header = {}
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        key, _, text = line[1:].strip().partition(": ")
        if key in ("field", "expect"):
            header[key] = text
    return header


def test_crd_names_match_the_package_constants() -> None:
    crd = load_crd()

    assert crd["metadata"]["name"] == f"{PLURAL}.{GROUP}"
    assert crd["spec"]["names"]["kind"] == KIND
    assert crd["spec"]["names"]["shortNames"] == ["mdep"]
    assert crd["spec"]["names"]["categories"] == ["modeldeploy"]
    [version] = crd["spec"]["versions"]
    assert version["name"] == VERSION
    assert version["subresources"] == {"status": {}}


def test_printer_columns_show_phase_revisions_weight_step_and_age() -> None:
    columns = load_crd()["spec"]["versions"][0]["additionalPrinterColumns"]
    shown = [(c["name"], c["jsonPath"]) for c in columns if c.get("priority", 0) == 0]

    assert shown == [
        ("Phase", ".status.phase"),
        ("Stable", ".status.stableRevision"),
        ("Canary", ".status.canaryRevision"),
        ("Weight", ".status.canaryWeight"),
        ("Step", ".status.currentStep"),
        ("Age", ".metadata.creationTimestamp"),
    ]


def test_every_field_has_a_description_for_kubectl_explain() -> None:
    # The API server forbids anything but name/generateName restrictions under metadata, descriptions included.
    undocumented = [path or "<root>" for path, node in walk(root_schema())
                    if not node.get("description") and path != ".metadata"]

    assert undocumented == []


def test_cel_inputs_are_bounded_so_the_estimated_cost_fits() -> None:
    unbounded = []
    for path, node in walk(root_schema()):
        if not path.startswith(".spec"):
            continue
        if node.get("type") == "string" and "enum" not in node and "maxLength" not in node:
            unbounded.append(path)
        if node.get("type") == "array" and "maxItems" not in node:
            unbounded.append(path)
        if node.get("type") == "object" and isinstance(node.get("additionalProperties"), dict) \
                and "maxProperties" not in node:
            unbounded.append(path)

    assert unbounded == []


def test_only_the_status_of_the_operator_is_schemaless_nowhere() -> None:
    preserved = [path for path, node in walk(root_schema()) if node.get("x-kubernetes-preserve-unknown-fields")]

    assert preserved == []


def test_typed_defaults_equal_the_crd_defaults() -> None:
    minimal = {"model": {
        "name": "iris",
        "serializedFile": {"uri": "pvc://models/iris/model.pt"},
        "handler": {"uri": "pvc://models/iris/handler.py"},
    }}
    defaulted = apply_defaults(copy.deepcopy(minimal), root_schema()["properties"]["spec"])

    assert defaulted["archive"]["store"] == {"pvc": {"claimName": "model-store"}}
    assert defaulted["rollout"]["analysis"]["metrics"][0]["provider"] == {"torchserve": {"metric": "error-rate"}}
    assert parse_spec(defaulted) == parse_spec(minimal)


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda p: p.name)
def test_samples_parse_with_and_without_the_crd_defaults(sample: Path) -> None:
    body = yaml.safe_load(sample.read_text())
    body["metadata"]["namespace"] = "samples"
    defaulted = copy.deepcopy(body)
    apply_defaults(defaulted["spec"], root_schema()["properties"]["spec"])

    assert parse(body).spec == parse(defaulted).spec


def test_there_are_at_least_thirty_invalid_spec_fixtures_each_naming_field_and_message() -> None:
    assert len(INVALID_SPECS) >= 30
    for path in INVALID_SPECS:
        header = fixture_header(path)
        assert header.get("field") and header.get("expect"), path.name


@pytest.mark.parametrize("fixture", INVALID_SPECS, ids=lambda p: p.stem)
def test_the_domain_refuses_every_spec_the_api_server_refuses_naming_the_same_field(fixture: Path) -> None:
    body = yaml.safe_load(fixture.read_text())
    body["metadata"]["namespace"] = "invalid"
    expected_field = fixture_header(fixture)["field"]

    with pytest.raises(SpecError) as caught:
        parse(body)

    assert caught.value.field.startswith(expected_field)


def test_crds_dir_holds_only_the_crd_so_kubectl_apply_f_works() -> None:
    documents = [d for p in CRD_PATH.parent.iterdir() for d in yaml.safe_load_all(p.read_text())]

    assert [d["kind"] for d in documents] == ["CustomResourceDefinition"]


def test_the_stable_template_keeps_every_field_of_an_archive_status() -> None:
    # A field the schema lacks is pruned by the API server: the operator would write it again on every resync.
    from modeldeploy.api.status import ArchiveStatus, StableTemplate

    status = root_schema()["properties"]["status"]["properties"]
    archive = status["archive"]["properties"]
    kept = status["rollout"]["properties"]["stable"]["properties"]["archive"]["properties"]
    assert set(kept) == set(archive)
    rendered = ArchiveStatus(revision="r", build_key="k", inputs_digest="i", sha256="s", uri="u", format="zip-store",
                             bytes=1, reused=False, build_seconds=1.5).render()
    template = StableTemplate(revision="r", spec={}, archive=ArchiveStatus.parse(rendered)).render()  # type: ignore[arg-type]
    assert set(template["archive"]) <= set(kept)
