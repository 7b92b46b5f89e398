"""The autoscaler's metrics source against a real Prometheus (the rig's, from the Debian
package): what a query returns, and how each kind of bad answer is reported."""

from __future__ import annotations

import re

import pytest

from deepseek_operator.autoscaler.metrics_source import MetricsUnavailable, query_qps

# pytest finds fixtures by name in the module; "as" re-exports them explicitly.
from e2e.rig.fixtures import rig_prometheus as rig_prometheus
from e2e.rig.prometheus import PrometheusServer


def test_a_scalar_and_a_summed_vector_are_requests_per_second(
        rig_prometheus: PrometheusServer) -> None:
    assert query_qps(rig_prometheus.url, "vector(2.5)") == 2.5
    assert query_qps(rig_prometheus.url, 'label_replace(vector(1), "a", "x", "", "") or '
                     'label_replace(vector(2), "a", "y", "", "")') == 3.0


def test_no_series_is_none_not_zero(rig_prometheus: PrometheusServer) -> None:
    assert query_qps(rig_prometheus.url, "e2e_metric_that_does_not_exist") is None


@pytest.mark.parametrize(("query", "message"), [
    ("vector(-5)", r"-5\.0 requests/s; a request rate cannot be negative: check "
                   r"spec\.autoscaling\.prometheus\.query"),
    ("vector(0) / 0", r"non-finite value \(nan\)"),
    ("sum(rate(x[1m]", r"Prometheus rejected spec\.autoscaling\.prometheus\.query: .*parse error"),
    ("vector(1)[1m:10s]", r"range vector; spec\.autoscaling\.prometheus\.query must give an "
                          r"instant vector or a scalar"),
    ('"abc"', r"query returned 'abc', not a number: check spec\.autoscaling\.prometheus\.query"),
])
def test_bad_answers_are_metrics_unavailable_with_the_reason(
        rig_prometheus: PrometheusServer, query: str, message: str) -> None:
    with pytest.raises(MetricsUnavailable, match=message):
        query_qps(rig_prometheus.url, query)


def test_a_refused_connection_names_the_url_field() -> None:
    with pytest.raises(MetricsUnavailable, match=(
            r"^Prometheus at http://127\.0\.0\.1:9 refused the connection \(nothing listens "
            r"there\): check the host and port in spec\.autoscaling\.prometheus\.url$")):
        query_qps("http://127.0.0.1:9", "vector(1)", timeout_seconds=2)


def test_a_url_that_is_not_the_api_base_names_the_url_field(
        rig_prometheus: PrometheusServer) -> None:
    url = f"{rig_prometheus.url}/api/v1"
    with pytest.raises(MetricsUnavailable, match=(
            rf"^Prometheus at {re.escape(url)} has no /api/v1/query \(HTTP 404 Not Found\): "
            r"spec\.autoscaling\.prometheus\.url must be the base URL of the Prometheus HTTP "
            r"API$")):
        query_qps(url, "vector(1)")
