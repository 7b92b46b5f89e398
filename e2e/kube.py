"""Small helpers the e2e tests share: API clients for the local control plane and polling.

Polling (rather than watches) keeps the tests simple; every wait is bounded and its
timeout message says what was awaited and what was last seen.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import yaml
from kubernetes import client, config
from kubernetes.client import ApiException

from e2e.cluster import build, paths

T = TypeVar("T")


def api_client(kubeconfig: Path) -> client.ApiClient:
    """An ApiClient for the given kubeconfig (its current context)."""
    cfg = client.Configuration()
    config.load_kube_config(str(kubeconfig), client_configuration=cfg)  # type: ignore[no-untyped-call]
    return client.ApiClient(cfg)


def token_client(base: client.ApiClient, token: str) -> client.ApiClient:
    """An ApiClient to the same server that authenticates with a bearer token only."""
    src = base.configuration
    cfg = client.Configuration()
    cfg.host = src.host
    cfg.ssl_ca_cert = src.ssl_ca_cert
    cfg.api_key = {"authorization": f"Bearer {token}"}
    return client.ApiClient(cfg)


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = 60.0,
             interval: float = 0.5) -> T:
    """Call ``probe`` until it returns a truthy value and return it.

    Raises TimeoutError after ``timeout`` seconds naming ``what`` and the last value seen.
    """
    deadline = time.monotonic() + timeout
    last: T | None = None
    while True:
        last = probe()
        if last:
            return last
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}; "
                               f"last seen: {last!r}")
        time.sleep(interval)


def install_pod_monitor_crd(kube: client.ApiClient) -> None:
    """Install the Prometheus Operator's PodMonitor CRD from the pinned module (an existing
    one is kept) and wait until it is Established, so the operator renders PodMonitors.
    Raises ApiException for a refused create, TimeoutError after 30 s."""
    crd = yaml.safe_load(build.podmonitor_crd(paths.versions()["prometheus-operator"]))
    extensions = client.ApiextensionsV1Api(kube)
    try:
        extensions.create_custom_resource_definition(crd)
    except ApiException as exc:
        if exc.status != 409:
            raise
    wait_for("the PodMonitor CRD Established", lambda: any(
        c.type == "Established" and c.status == "True"
        for c in extensions.read_custom_resource_definition(
            crd["metadata"]["name"]).status.conditions or []), 30)
