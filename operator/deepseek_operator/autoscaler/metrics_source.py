"""Read a deployment's request rate (requests/s) from Prometheus with prometheus-api-client.

The query is an instant PromQL query whose result is one number, e.g. the default vLLM
query ``sum(rate(vllm:request_success_total{namespace="ai", pod=~"r1-.*"}[1m]))``. Three
outcomes are told apart, because the autoscaler treats them differently:

* a number: the observed QPS;
* ``None``: Prometheus answered but has no series (nothing scraped yet, or every replica is
  gone) — the policy holds the current count;
* ``MetricsUnavailable``: Prometheus is unreachable, slow, or rejected the query — the
  policy holds too, and ``AutoscalerReady`` turns False with the reason.
"""

from __future__ import annotations

import ast
import json
import math
import re
from typing import Any

import requests
from prometheus_api_client import PrometheusConnect
from prometheus_api_client.exceptions import PrometheusApiClientException
from urllib3.util.retry import Retry

DEFAULT_TIMEOUT_SECONDS = 5


QUERY_FIELD = "spec.autoscaling.prometheus.query"


class MetricsUnavailable(Exception):
    """Prometheus could not answer; the message says why (for the AutoscalerReady reason)."""


def query_qps(url: str, query: str, timeout_seconds: int = DEFAULT_TIMEOUT_SECONDS) -> float | None:
    """Evaluate ``query`` at ``url`` now; the sum of the returned samples in requests/s.

    Returns None when the result is empty. Raises MetricsUnavailable on connection errors,
    timeouts (``timeout_seconds``), HTTP errors, query errors, and answers that are not a
    request rate (see `_sum_samples`).
    """
    # No retries here: the autoscaler loop runs again at the next interval, and a retry
    # storm against a struggling Prometheus helps nobody.
    prom = PrometheusConnect(url=url, disable_ssl=True, timeout=timeout_seconds,
                             retry=Retry(total=0))
    try:
        result = prom.custom_query(query, params={"timeout": f"{timeout_seconds}s"})
    except requests.exceptions.Timeout as exc:
        raise MetricsUnavailable(f"Prometheus at {url} did not answer within "
                                 f"{timeout_seconds}s") from exc
    except requests.exceptions.RequestException as exc:
        raise MetricsUnavailable(f"Prometheus at {url} is unreachable: "
                                 f"{type(exc).__name__}") from exc
    except PrometheusApiClientException as exc:
        raise MetricsUnavailable(
            f"Prometheus rejected {QUERY_FIELD}: {_prometheus_error(str(exc))}") from exc
    if not result:
        return None
    return _sum_samples(result)


# prometheus-api-client reports a non-200 answer only as text, with the body as a bytes
# repr: 'HTTP Status Code 400 (b\'{"status":"error","error":"1:5: parse error: ..."}\')'.
_BODY = re.compile(r"\((b'.*'|b\".*\")\)$", re.DOTALL)


def _prometheus_error(text: str) -> str:
    """Prometheus' own error message out of the client's exception text, else the text."""
    found = _BODY.search(text)
    if found is None:
        return text
    try:
        body = json.loads(ast.literal_eval(found.group(1)))
    except (ValueError, SyntaxError):
        return text
    return str(body.get("error") or text) if isinstance(body, dict) else text


def _sum_samples(result: list[Any]) -> float:
    """The sum of a query result's samples, requests/s.

    A scalar or string result is ``[timestamp, "value"]``; an instant vector a list of
    ``{"metric", "value"}``; a range vector a list of ``{"metric", "values"}`` (Prometheus
    HTTP API, "Expression query result formats").

    Raises MetricsUnavailable naming the query field for a range vector, a value that is
    not a number, a non-finite value or a negative sum (a request rate cannot be below
    zero, so the query measures something else).
    """
    if isinstance(result[0], dict):
        if any("value" not in sample for sample in result):
            raise MetricsUnavailable(
                f"query returned a range vector; {QUERY_FIELD} must give an instant vector "
                "or a scalar, e.g. sum(rate(...[1m]))")
        texts = [sample["value"][1] for sample in result]
    else:
        texts = [result[1]]
    total = 0.0
    for text in texts:
        try:
            value = float(text)
        except (TypeError, ValueError):
            raise MetricsUnavailable(
                f"query returned {text!r}, not a number: check {QUERY_FIELD}") from None
        if not math.isfinite(value):
            raise MetricsUnavailable(f"query returned a non-finite value ({value})")
        total += value
    if total < 0:
        raise MetricsUnavailable(
            f"query returned {total} requests/s; a request rate cannot be negative: check "
            f"{QUERY_FIELD}")
    return total
