"""Sources and archive store on S3, end to end, with what the operator image holds and nothing more.

The S3 API is moto's server on the cluster bridge's gateway address, the one address of the host that
pods reach (nothing leaves the machine), with its IAM checks on: a wrong key is refused as AWS refuses
it. The operator, the build Job and the serving pods' archive check all run `modeldeploy` from a clean
virtualenv holding only this package's wheel and its runtime dependencies (no dev or serve extras), as
the image does: the node agent runs the pods' rendered command lines as they are, under their security
context (uid, read-only root, /tmp an emptyDir).
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from e2e.helpers import OperatorProcess, apply, condition, mdep, predict, ready_addresses, wait_phase
from localcluster import LocalCluster
from support import REPO, kubectl_json, wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.torchserve]

SAMPLE = REPO / "manifests" / "samples" / "iris-s3.yaml"
NAME = "iris-s3"
SECRET = "iris-s3-credentials"
IMAGE_ROOT = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "modeldeploy" / "image-venv"
# What the image must not hold: the serve and dev extras.
# numpy is not among them: scipy, whose exact intervals judge the canary, is built on it.
EXTRAS = ("torch", "torchserve", "torch-model-archiver", "scikit-learn", "pytest", "moto", "ruff", "mypy")


def _package_digest() -> str:
    """A digest of everything the wheel is built from, so a changed source gets a new virtualenv."""
    sha = hashlib.sha256()
    files = [REPO / "pyproject.toml", REPO / "README.md",
             *sorted(p for p in (REPO / "operator" / "modeldeploy").rglob("*")
                     if p.is_file() and "__pycache__" not in p.parts)]
    for path in files:
        sha.update(str(path.relative_to(REPO)).encode() + b"\0" + path.read_bytes() + b"\0")
    return sha.hexdigest()[:16]


@pytest.fixture(scope="module")
def image_venv() -> Path:
    """`pip wheel --no-deps .`, then a fresh virtualenv with `pip install THE.whl` (dependencies from pip's
    cache). Outside /tmp: a pod's /tmp is its own emptyDir, and pods see the host's files as their image."""
    venv = IMAGE_ROOT / _package_digest()
    if not (venv / ".complete").exists():
        subprocess.run(["rm", "-rf", str(venv)], check=True)
        with tempfile.TemporaryDirectory() as dist:
            subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", dist,
                            str(REPO)], check=True, capture_output=True, cwd=REPO)
            (wheel,) = Path(dist).glob("modeldeploy_operator-*.whl")
            subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True, capture_output=True)
            subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet", str(wheel)], check=True,
                           capture_output=True, cwd=dist)
        (venv / ".complete").touch()
    for path in [venv, *venv.parents]:
        if path == Path("/"):
            break
        # uid 65532 and 1000 in the pods traverse to the entry point (/root is opened in the pod's layer).
        assert path == Path.home() or os.stat(path).st_mode & 0o005 == 0o005, f"{path} is not readable by all"
    return venv


@dataclass
class S3Server:
    endpoint: str
    key_id: str
    secret_key: str

    def client(self, secret_key: str | None = None) -> Any:
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                            aws_access_key_id=self.key_id, aws_secret_access_key=secret_key or self.secret_key)


@pytest.fixture(scope="module")
def s3_server(cluster: LocalCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """moto's S3 server on the bridge's gateway, with one IAM user allowed s3:*; then checks switched on."""
    import boto3

    host = cluster.bridge.gateway
    with socket.socket() as sock:
        sock.bind((host, 0))
        port = int(sock.getsockname()[1])
    endpoint = f"http://{host}:{port}"
    log = open(tmp_path_factory.mktemp("moto") / "moto.log", "ab")  # noqa: SIM115 - closed at the end
    server = subprocess.Popen([str(Path(sys.executable).parent / "moto_server"), "-H", host, "-p", str(port)],
                              stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for(lambda: _answers(endpoint), timeout=30, message=f"moto at {endpoint}")
        iam = boto3.client("iam", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="setup",
                           aws_secret_access_key="setup")
        iam.create_user(UserName="modeldeploy")
        iam.put_user_policy(UserName="modeldeploy", PolicyName="s3", PolicyDocument=json.dumps({
            "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}))
        key = iam.create_access_key(UserName="modeldeploy")["AccessKey"]
        # From now on every request is authenticated and authorized.
        urllib.request.urlopen(urllib.request.Request(f"{endpoint}/moto-api/reset-auth", data=b"0", method="POST",
                                                      headers={"Content-Type": "text/plain"}), timeout=10).read()
        yield S3Server(endpoint, key["AccessKeyId"], key["SecretAccessKey"])
    finally:
        server.terminate()
        server.wait(timeout=20)
        log.close()


def _answers(endpoint: str) -> bool:
    try:
        with urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=2):
            return True
    except OSError:
        return False


@pytest.fixture(scope="module")
def image_operator(cluster: LocalCluster, image_venv: Path,
                   tmp_path_factory: pytest.TempPathFactory) -> Iterator[OperatorProcess]:
    """The operator started from the clean virtualenv, naming that entry point as its command in pods."""
    cluster.kubectl("apply", "-f", str(REPO / "manifests" / "crds"))
    wait_for(lambda: any(c["type"] == "Established" and c["status"] == "True" for c in json.loads(cluster.kubectl(
        "get", "crd", "modeldeployments.modeldeploy.dev", "-o", "json", check=False).stdout or "{}").get(
        "status", {}).get("conditions", [])), timeout=60, interval=0.5, message="the CRD established")
    entry = str(image_venv / "bin" / "modeldeploy")
    running = OperatorProcess(cluster, tmp_path_factory.mktemp("operator") / "operator.log", command=[entry],
                              env={"MODELDEPLOY_OPERATOR_COMMAND": entry, "PYTHONPATH": ""})
    running.start()
    yield running
    running.stop()


def document(s3: S3Server, weights_sha256: str) -> dict[str, Any]:
    """The S3 sample, pointed at the local server, with the real pin, one small replica."""
    body = yaml.safe_load(SAMPLE.read_text())
    spec = body["spec"]
    spec["model"]["serializedFile"]["sha256"] = weights_sha256
    spec["model"]["extraFiles"] = [{"uri": "s3://models/iris/index_to_name.json"}]
    spec["archive"]["store"]["s3"]["endpoint"] = s3.endpoint
    spec["serving"].update(replicas=1, resources={"requests": {"cpu": "100m", "memory": "256Mi"},
                                                  "limits": {"memory": "2Gi"}})
    return body  # type: ignore[no-any-return]


def launched(cluster: LocalCluster, pod: dict[str, Any], container: str) -> dict[str, Any]:
    """What the node agent gave the container's launcher: argv, environment, user, root."""
    path = cluster.dir / "pods" / pod["metadata"]["uid"] / "containers" / container / "config.json"
    return dict(json.loads(path.read_text()))


def pods_with_container(cluster: LocalCluster, namespace: str, name: str) -> list[dict[str, Any]]:
    items = kubectl_json(cluster, "get", "pods", "-n", namespace)["items"]
    return [p for p in items if any(c["name"] == name for c in p["spec"].get("initContainers", [])
                                    + p["spec"]["containers"])]


def reason_after_rolling(cluster: LocalCluster, namespace: str, reason: str) -> dict[str, Any]:
    cluster.kubectl("delete", "pods", "-n", namespace, "-l", "modeldeploy.dev/role=stable", "--wait=false")
    body = wait_for(lambda: (lambda b: b if condition(b, "Ready").get("reason") == reason else None)(
        mdep(cluster, namespace, NAME)), timeout=120, interval=0.5, message=f"Ready reason {reason}")
    assert isinstance(body, dict)
    return condition(body, "Ready")


def test_an_s3_sample_builds_serves_and_refuses_a_tampered_archive_and_wrong_credentials(
    cluster: LocalCluster, image_venv: Path, s3_server: S3Server, image_operator: OperatorProcess,
    namespace: str, iris_files: Path,
) -> None:
    installed = json.loads(subprocess.run([str(image_venv / "bin" / "python"), "-m", "pip", "list", "--format=json"],
                                          check=True, capture_output=True, text=True).stdout)
    names = {p["name"].lower() for p in installed}
    assert "modeldeploy-operator" in names and not names & set(EXTRAS)

    s3 = s3_server.client()
    for bucket in ("models", "model-archives"):
        s3.create_bucket(Bucket=bucket)
    s3.upload_file(str(iris_files / "model.pt"), "models", "iris/1/model.pt")
    for name in ("handler.py", "index_to_name.json"):
        s3.upload_file(str(iris_files / name), "models", f"iris/{name}")
    credentials = {"AWS_ACCESS_KEY_ID": s3_server.key_id, "AWS_SECRET_ACCESS_KEY": s3_server.secret_key}
    cluster.kubectl("create", "secret", "generic", SECRET, "-n", namespace,
                    *[f"--from-literal={k}={v}" for k, v in credentials.items()])
    weights = hashlib.sha256((iris_files / "model.pt").read_bytes()).hexdigest()
    apply(cluster, namespace, document(s3_server, weights))

    body = wait_phase(cluster, namespace, "Healthy", name=NAME, timeout=360)
    archive = body["status"]["archive"]
    key = archive["uri"].removeprefix("s3://model-archives/")
    assert key == f"modeldeploy/{archive['inputsDigest']}/iris.mar"
    stored = s3.get_object(Bucket="model-archives", Key=key)["Body"].read()
    assert hashlib.sha256(stored).hexdigest() == archive["sha256"]
    (address,) = ready_addresses(cluster, namespace, NAME)
    code, answer = predict(address, [[5.1, 3.5, 1.4, 0.2]])
    assert code == 200, answer

    # The pods' real command lines ran from the clean virtualenv, under their security context.
    entry = str(image_venv / "bin" / "modeldeploy")
    # The build pod is gone from the node once finished: its spec is what the node agent ran.
    (build_pod,) = pods_with_container(cluster, namespace, "build")
    build = build_pod["spec"]["containers"][0]
    assert build["command"] == [entry] and build["securityContext"]["readOnlyRootFilesystem"] is True
    assert build_pod["spec"]["securityContext"]["runAsUser"] == 65532
    work_dir = build["args"][build["args"].index("--work-dir") + 1]
    (tmp_volume,) = [m["name"] for m in build["volumeMounts"] if m["mountPath"] == work_dir]
    assert any(v["name"] == tmp_volume and "emptyDir" in v for v in build_pod["spec"]["volumes"])
    assert build_pod["status"]["phase"] == "Succeeded"
    result = json.loads(build_pod["status"]["containerStatuses"][0]["state"]["terminated"]["message"])
    assert result["sha256"] == archive["sha256"] and result["uri"] == archive["uri"]
    # The serving pod runs: the node agent's launcher still holds what it started its init container with.
    (serving_pod,) = pods_with_container(cluster, namespace, "verify-archive")
    check = serving_pod["spec"]["initContainers"][0]
    config = launched(cluster, serving_pod, "verify-archive")
    assert config["argv"] == check["command"] and config["argv"][0] == entry
    assert config["argv"][config["argv"].index("--output") + 1] == "/home/model-server/model-store/iris.mar"
    assert config["readOnlyRoot"] is True and config["uid"] == serving_pod["spec"]["securityContext"]["runAsUser"]

    # Other bytes under the archive's key: the new pod refuses them before TorchServe starts.
    s3.put_object(Bucket="model-archives", Key=key, Body=stored + b"tampered")
    ready = reason_after_rolling(cluster, namespace, "DigestMismatch")
    assert archive["sha256"] in ready["message"]

    # A wrong secret key: the store refuses the credentials, and the condition says so (the archive's
    # bytes are right again, so only the credentials are wrong).
    wrong = {**credentials, "AWS_SECRET_ACCESS_KEY": "not-the-key"}
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump({
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": SECRET}, "stringData": wrong}))
    s3.put_object(Bucket="model-archives", Key=key, Body=stored)
    ready = reason_after_rolling(cluster, namespace, "StoreCredentialsRefused")
    assert "credentials" in ready["message"] and "SignatureDoesNotMatch" in ready["message"]
    assert mdep(cluster, namespace, NAME)["status"]["phase"] == "Degraded"
