"""pytest fixtures for the autoscaler rig: a real Prometheus, a stand-in fleet, load runs.

Import them into a conftest (or a test module) by name::

    from e2e.rig.fixtures import rig_fleet, rig_load, rig_prometheus

Teardown stops everything and fails the test if a started process is still alive.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import pytest

from e2e.rig.fleet import StandInFleet
from e2e.rig.load import LoadGenerator
from e2e.rig.prometheus import PrometheusNotInstalledError, PrometheusServer

RIG_MODEL = "deepseek-r1"


class LoadFactory(Protocol):
    """Starts a load run against the fixture's fleet (see ``rig_load``)."""

    def __call__(self, qps: float, *, max_requests: int = 1000,
                 max_duration_s: float = 60.0) -> LoadGenerator:
        """Start ``qps`` requests/s over the fleet's live stand-ins; return the running run."""
        ...


def start_prometheus(workdir: Path) -> PrometheusServer:
    """Start a Prometheus under ``workdir``; fail the test (never skip) if it is missing."""
    server = PrometheusServer(workdir)
    try:
        server.start()
    except PrometheusNotInstalledError as error:
        pytest.fail(str(error), pytrace=False)
    return server


@pytest.fixture(scope="session")
def rig_prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusServer]:
    """One Prometheus for the session, 1 s scrape interval, targets from file SD."""
    server = start_prometheus(tmp_path_factory.mktemp("prometheus"))
    yield server
    server.stop()
    assert not server.is_running(), f"Prometheus (PID {server.pid}) still running"


@pytest.fixture
def rig_fleet(rig_prometheus: PrometheusServer, tmp_path: Path) -> Iterator[StandInFleet]:
    """An empty vLLM-flavoured fleet serving ``RIG_MODEL`` and registered with
    ``rig_prometheus``; call ``sync`` to start stand-ins."""
    fleet = StandInFleet(tmp_path / "fleet", model=RIG_MODEL, engine="vllm",
                         prometheus=rig_prometheus)
    yield fleet
    fleet.stop()
    assert fleet.leftover_pids() == [], "stand-in processes still running"


@pytest.fixture
def rig_load(rig_fleet: StandInFleet) -> Iterator[LoadFactory]:
    """Start load runs over ``rig_fleet``'s live stand-ins; all are stopped at teardown."""
    runs: list[LoadGenerator] = []

    def start(qps: float, *, max_requests: int = 1000,
              max_duration_s: float = 60.0) -> LoadGenerator:
        run = LoadGenerator(rig_fleet.endpoints, model=rig_fleet.model, qps=qps,
                            max_requests=max_requests, max_duration_s=max_duration_s)
        runs.append(run)
        run.start()
        return run

    yield start
    for run in runs:
        run.stop()
