"""Session fixtures for the e2e suite: a real control plane and per-test namespaces.

The control plane is the one named by ``KUBECONFIG`` when that is set; otherwise the
session brings up the local one (``python -m e2e.cluster up``) and, if it started it, stops
it again at the end so nothing is left running.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest
from kubernetes import client

from e2e.cluster import build, controlplane, paths
from e2e.gateway_rig import GATEWAY_ACCOUNT, GATEWAY_NAMESPACE
from e2e.kube import api_client, wait_for
from e2e.operator_process import OperatorProcess, install_manifests
from e2e.rig.fixtures import rig_fleet, rig_load, rig_prometheus  # noqa: F401  (fixtures)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test under e2e/ as e2e, so `-m "not e2e"` runs the unit tests alone."""
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def kubeconfig() -> Iterator[Path]:
    """Path of an admin kubeconfig for a running control plane."""
    given = os.environ.get("KUBECONFIG")
    if given:
        yield Path(given)
        return
    was_running = controlplane.running()
    path = controlplane.up()
    yield path
    if not was_running:
        controlplane.down()


@pytest.fixture(scope="session")
def kube(kubeconfig: Path) -> client.ApiClient:
    """An admin ApiClient (group system:masters)."""
    return api_client(kubeconfig)


@pytest.fixture
def namespace(kube: client.ApiClient) -> Iterator[str]:
    """A fresh namespace for one test (with its default ServiceAccount), deleted afterwards."""
    core = client.CoreV1Api(kube)
    name = f"e2e-{uuid.uuid4().hex[:8]}"
    core.create_namespace({"metadata": {"name": name}})
    wait_for(f"ServiceAccount {name}/default",
             lambda: any(sa.metadata.name == "default"
                         for sa in core.list_namespaced_service_account(name).items), 30)
    yield name
    core.delete_namespace(name)


@pytest.fixture(scope="session")
def kubectl(kubeconfig: Path) -> Iterator[Path]:
    """The kubectl binary built by the project's tooling."""
    yield build.build_all()["kubectl"]


@pytest.fixture(scope="session")
def operator(kubeconfig: Path, kubectl: Path) -> Iterator[OperatorProcess]:
    """The CRDs and RBAC installed, and the operator running as its ServiceAccount."""
    install_manifests(kubectl, kubeconfig)
    proc = OperatorProcess(controlplane.kubeconfig_path("operator"),
                           paths.state_dir() / "logs" / "operator-e2e.log",
                           [f"--gateway-service-account={GATEWAY_NAMESPACE}/{GATEWAY_ACCOUNT}",
                            "--download-poll-seconds=5",  # e2e downloads take seconds
                            # A repair within a test comes from a watch event, not the resync.
                            "--resync-seconds=3600"])
    proc.start()
    yield proc
    proc.stop()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
        item: pytest.Item, call: pytest.CallInfo[None],
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Keep each phase's report on the test item, so fixtures can see a failure."""
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


# What a failed e2e test prints of its namespace (kubectl get ... -o KIND per entry).
DUMP = (
    ("deepseekdeployments", "yaml"),
    ("deployments,jobs,persistentvolumeclaims,services,configmaps,horizontalpodautoscalers",
     "wide"),
    ("pods", "wide"),
)


def dump_namespace(kubectl: Path, kubeconfig: Path, namespace: str) -> str:
    """The DeepSeekDeployments of ``namespace`` (YAML), their children, pods and events, as
    text for a failure report (kubectl's own errors included, so a dump never raises)."""
    parts = []
    for resources, output in DUMP:
        result = subprocess.run(
            [str(kubectl), "--kubeconfig", str(kubeconfig), "-n", namespace, "get",
             resources, "-o", output], capture_output=True, text=True, check=False, timeout=30)
        parts.append(f"--- kubectl get {resources} ---\n{result.stdout}{result.stderr}")
    events = subprocess.run(
        [str(kubectl), "--kubeconfig", str(kubeconfig), "-n", namespace, "get", "events",
         "--sort-by=.metadata.creationTimestamp"], capture_output=True, text=True, check=False,
        timeout=30)
    parts.append(f"--- events ---\n{events.stdout}{events.stderr}")
    return "\n".join(parts)


@pytest.fixture
def dsd_api(request: pytest.FixtureRequest, kube: client.ApiClient, kubectl: Path,
            kubeconfig: Path, operator: OperatorProcess) -> Iterator[client.CustomObjectsApi]:
    """CustomObjectsApi for DeepSeekDeployments. When the test fails, pytest shows with the
    failure: the test namespace's DeepSeekDeployments, children, pods and events, and the
    operator's log tail."""
    yield client.CustomObjectsApi(kube)
    report = getattr(request.node, "report_call", None)
    if report is None or not report.failed:
        return
    namespace = request.node.funcargs.get("namespace")
    if isinstance(namespace, str):
        print(dump_namespace(kubectl, kubeconfig, namespace))
    print(f"--- operator log tail ({operator.log_path}) ---\n{operator.log_tail()}")
