"""The archive build Job of a revision, and how its outcome is read."""

from __future__ import annotations

import json
from typing import Any

import yaml

from modeldeploy.api.spec import PvcStore, S3Store, parse
from modeldeploy.building import JobState, archive_status, build_job, job_name, job_outcome, store_uri
from modeldeploy.settings import OperatorIdentity
from support import REPO

OPERATOR = OperatorIdentity(image="registry.example/modeldeploy-operator:0.1.0")


def sample(name: str = "iris.yaml") -> Any:
    body = yaml.safe_load((REPO / "manifests/samples" / name).read_text())
    body["metadata"].update(namespace="ml", uid="0f0e0d0c-0000-4000-8000-000000000001", generation=1)
    return parse(body)


def test_the_job_is_named_by_the_build_key_and_owned_by_the_model_deployment() -> None:
    md = sample()
    job = build_job(md, "abcdef012345", OPERATOR)
    assert job["metadata"]["name"] == job_name(md, "abcdef012345") == "iris-build-abcdef012345"
    owner = job["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["uid"], owner["controller"]) == (
        "ModelDeployment", "iris", md.uid, True)
    assert job["metadata"]["labels"]["modeldeploy.dev/build-key"] == "abcdef012345"


def test_pvc_sources_are_mounted_read_only_and_the_store_read_write() -> None:
    job = build_job(sample(), "abcdef012345", OPERATOR)
    pod = job["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["src-models"]["persistentVolumeClaim"] == {"claimName": "models", "readOnly": True}
    assert volumes["store"]["persistentVolumeClaim"] == {"claimName": "model-store"}
    mounts = {m["mountPath"]: m for m in pod["containers"][0]["volumeMounts"]}
    assert mounts["/sources/models"]["readOnly"] is True
    assert "readOnly" not in mounts["/store"]
    args = pod["containers"][0]["args"]
    assert args[args.index("--serialized-file") + 1] == "/sources/models/iris/1/model.pt"
    assert args[args.index("--handler") + 1] == "/sources/models/iris/handler.py"
    assert args[args.index("--store") + 1] == "/store"
    assert args[args.index("--source-root") + 1] == "/sources"


def test_the_build_pod_meets_the_restricted_pod_security_profile() -> None:
    pod = build_job(sample(), "abcdef012345", OPERATOR)["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    container = pod["containers"][0]
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert container["image"] == OPERATOR.image and container["command"] == ["modeldeploy"]
    assert pod["automountServiceAccountToken"] is False and pod["restartPolicy"] == "Never"


def test_job_limits_come_from_the_spec() -> None:
    md = sample()
    spec = build_job(md, "abcdef012345", OPERATOR)["spec"]
    assert spec["backoffLimit"] == md.spec.archive.build.backoff_limit
    assert spec["activeDeadlineSeconds"] == md.spec.archive.build.active_deadline_seconds
    assert spec["ttlSecondsAfterFinished"] > 0


def test_s3_store_and_builtin_handler_need_no_claims_and_take_credentials_from_the_secret() -> None:
    md = sample("iris-s3.yaml")
    assert isinstance(md.spec.archive.store, S3Store)
    pod = build_job(md, "abcdef012345", OPERATOR)["spec"]["template"]["spec"]
    assert not any("persistentVolumeClaim" in v for v in pod["volumes"])
    container = pod["containers"][0]
    assert {"secretRef": {"name": md.spec.archive.store.secret_name}} in container["envFrom"]
    args = container["args"]
    assert args[args.index("--store") + 1].startswith(f"s3://{md.spec.archive.store.bucket}")


def test_an_s3_builds_downloads_go_to_the_pods_writable_emptydir() -> None:
    pod = build_job(sample("iris-s3.yaml"), "abcdef012345", OPERATOR)["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    work_dir = container["args"][container["args"].index("--work-dir") + 1]
    empty_dirs = {v["name"] for v in pod["volumes"] if "emptyDir" in v}
    writable = [m["mountPath"] for m in container["volumeMounts"] if m["name"] in empty_dirs]
    assert any(work_dir == path or work_dir.startswith(path.rstrip("/") + "/") for path in writable)


def job(condition: str | None) -> dict[str, Any]:
    conditions = [{"type": condition, "status": "True", "reason": "BackoffLimitExceeded",
                   "message": "Job has reached the specified backoff limit"}] if condition else []
    return {"status": {"conditions": conditions}}


def pod(message: str, finished: str = "2026-01-01T00:00:01Z") -> dict[str, Any]:
    return {"status": {"containerStatuses": [{"state": {"terminated": {"exitCode": 0, "message": message,
                                                                     "finishedAt": finished}}}]}}


RESULT = {"inputsDigest": "a" * 64, "sha256": "b" * 64, "uri": "file:///store/" + "a" * 64 + "/iris.mar",
          "format": "zip-store", "bytes": 14694, "reused": False, "warnings": []}


def test_a_complete_job_yields_its_result_and_the_status_names_the_claim() -> None:
    outcome = job_outcome(job("Complete"), [pod(json.dumps(RESULT))])
    assert outcome.state == "succeeded" and outcome.result == RESULT
    md = sample()
    status = archive_status(RESULT, md, "0123456789", "abcdef012345")
    assert status.uri == "pvc://model-store/" + "a" * 64 + "/iris.mar"
    assert (status.build_key, status.revision, status.bytes) == ("abcdef012345", "0123456789", 14694)
    assert status.render()["buildKey"] == "abcdef012345"


def test_a_refused_build_reports_its_reason_and_message() -> None:
    refusal = {"reason": "InputRefused", "message": "handler: /sources/models/iris/missing.py does not exist"}
    earlier = pod("{}", finished="2026-01-01T00:00:00Z")
    outcome = job_outcome(job("Failed"), [earlier, pod(json.dumps(refusal))])
    assert (outcome.state, outcome.reason) == ("failed", "InputRefused")
    assert "missing.py" in outcome.message


def test_a_failed_build_without_a_result_reports_the_log_tail() -> None:
    log = "\n".join(f"line {i}" for i in range(30)) + "\nTraceback: boom"
    outcome = job_outcome(job("Failed"), [pod(log)])
    assert outcome.state == "failed" and outcome.message.endswith("Traceback: boom")
    assert "line 5\n" not in outcome.message  # only the last lines


def test_a_complete_job_without_a_result_is_a_failure_not_a_success() -> None:
    outcome = job_outcome(job("Complete"), [pod("not json")])
    assert (outcome.state, outcome.reason) == ("failed", "BuildResultMissing")


def test_a_job_without_a_final_condition_is_running() -> None:
    assert job_outcome(job(None), []).state is JobState.RUNNING


def test_only_paths_inside_the_pvc_store_are_translated() -> None:
    store = PvcStore(claim_name="model-store")
    assert store_uri("file:///store/x/iris.mar", store) == "pvc://model-store/x/iris.mar"
    assert store_uri("s3://bucket/x/iris.mar", store) == "s3://bucket/x/iris.mar"


def test_a_model_config_file_is_an_archive_input_with_its_pin() -> None:
    body = yaml.safe_load((REPO / "manifests/samples/iris.yaml").read_text())
    body["metadata"].update(namespace="ml", uid="0f0e0d0c-0000-4000-8000-000000000001", generation=1)
    body["spec"]["model"]["configFile"] = {"uri": "pvc://models/iris/faulty/model-config.yaml", "sha256": "c" * 64}
    args = build_job(parse(body), "abcdef012345", OPERATOR)["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--config-file") + 1] == "/sources/models/iris/faulty/model-config.yaml"
    assert args[args.index("--config-file-sha256") + 1] == "c" * 64


def test_build_pods_are_not_behind_the_service_that_serves_inference() -> None:
    job = build_job(sample(), "abcdef012345", OPERATOR)
    pod_labels = job["spec"]["template"]["metadata"]["labels"]
    assert "modeldeploy.dev/deployment" not in pod_labels  # the Service NAME selects serving pods by it
    assert job["metadata"]["labels"]["modeldeploy.dev/deployment"] == "iris"  # the Job still names its owner
