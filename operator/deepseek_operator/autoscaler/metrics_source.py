"""Read a deployment's request rate (requests/s) from Prometheus with prometheus-api-client.

The query is an instant PromQL query whose result is one number, e.g. the default vLLM
query ``sum(rate(vllm:request_success_total{namespace="ai", pod=~"r1-.*"}[1m]))``. Three
outcomes are told apart, because the autoscaler treats them differently:

* a number: the observed QPS;
* ``None``: Prometheus answered but has no series (nothing scraped yet, or every replica is
  gone) — the policy holds the current count;
* ``MetricsUnavailable``: Prometheus could not be asked, did not answer, answered an error,
  or answered something that is not a request rate — the policy holds too, and
  ``AutoscalerReady`` turns False with the message. `describe_failure` words the message,
  one per kind of failure; it names the field to fix where there is one, and never shows
  the credentials of a URL.
"""

from __future__ import annotations

import http
import math
import re
import socket
from typing import Any

import requests
import urllib3.exceptions
from prometheus_api_client import PrometheusConnect
from prometheus_api_client.exceptions import PrometheusApiClientException
from requests.models import DEFAULT_REDIRECT_LIMIT
from urllib3.util.retry import Retry

DEFAULT_TIMEOUT_SECONDS = 5


QUERY_FIELD = "spec.autoscaling.prometheus.query"
URL_FIELD = "spec.autoscaling.prometheus.url"
QUERY_PATH = "/api/v1/query"


class MetricsUnavailable(Exception):
    """Prometheus could not answer; the message says why (for the AutoscalerReady reason)."""


def query_qps(url: str, query: str, timeout_seconds: int = DEFAULT_TIMEOUT_SECONDS) -> float | None:
    """Evaluate ``query`` at ``url`` now; the sum of the returned samples in requests/s.

    Returns None when the result is empty. Raises MetricsUnavailable, worded by
    `describe_failure`, when the request fails (``timeout_seconds`` bounds the connect and
    each read), when Prometheus answers other than 200 with a query result, and for answers
    that are not a request rate (see `_sum_samples`). An https:// URL's certificate is
    verified against the system's CA bundle (certifi), or the file ``REQUESTS_CA_BUNDLE``
    names in the operator's environment: the URL may carry credentials.
    """
    responses: list[requests.Response] = []

    def keep(response: requests.Response, **_: Any) -> None:
        responses.append(response)

    with requests.Session() as session:
        # The client raises HTTP errors as text; the response itself gives the status code
        # and Prometheus' error body.
        session.hooks["response"].append(keep)
        try:
            # No retries: the autoscaler loop runs again at the next interval, and a retry
            # storm against a struggling Prometheus helps nobody. read=False (as requests'
            # own default) raises a read timeout as such, not as a "max retries" error.
            prom = PrometheusConnect(url=url, session=session, timeout=timeout_seconds,
                                     retry=Retry(total=0, read=False))
            return _sum_samples(prom.custom_query(
                query, params={"timeout": f"{timeout_seconds}s"}))
        # ValueError: PrometheusConnect parses the URL (e.g. "Invalid IPv6 URL"); LookupError,
        # TypeError: JSON that is not a query result (no data.result, or a result that is
        # not shaped as one).
        except (requests.exceptions.RequestException, PrometheusApiClientException,
                ValueError, LookupError, TypeError) as exc:
            raise MetricsUnavailable(describe_failure(
                exc, responses[-1] if responses else None, url, timeout_seconds)) from exc


def _sum_samples(result: Any) -> float | None:
    """The sum of a query result's samples, requests/s; None for an empty result.

    A scalar or string result is ``[timestamp, "value"]``; an instant vector a list of
    ``{"metric", "value"}``; a range vector a list of ``{"metric", "values"}`` (Prometheus
    HTTP API, "Expression query result formats").

    Raises MetricsUnavailable naming the query field for a range vector, a value that is
    not a number, a non-finite value or a negative sum (a request rate cannot be below
    zero, so the query measures something else). Raises TypeError or LookupError for a
    result not shaped as one of those (not from Prometheus' query API).
    """
    if not isinstance(result, list):
        raise TypeError(f"a query result is a list, not {type(result).__name__}")
    if not result:
        return None
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


# Failures before a usable HTTP answer, most specific first: the first row with a type that
# matches the exception or anything it wraps (`_causes`) words the message. {url} is the
# URL without credentials, {timeout} the timeout in seconds, {detail} what the network
# layers said (e.g. "[Errno 113] No route to host"), {content_type} the answer's
# Content-Type.
_NOT_THE_API = f"{URL_FIELD} must be the base URL of the Prometheus HTTP API"
_FAILURES: tuple[tuple[tuple[type[BaseException], ...], str], ...] = (
    # First: a proxy's own failure wraps a refused connection, a DNS failure or an invalid
    # URL (the proxy's, from the operator's environment), which are not the spec's.
    ((requests.exceptions.ProxyError, requests.exceptions.InvalidProxyURL,
      urllib3.exceptions.ProxyError, urllib3.exceptions.ProxySchemeUnknown),
     "the HTTP proxy to Prometheus at {url} failed ({detail}): check HTTP_PROXY, HTTPS_PROXY "
     "and NO_PROXY in the operator's environment"),
    # Not urllib3's ConnectTimeoutError: its NewConnectionError (refused, DNS) is one too.
    ((requests.exceptions.ConnectTimeout,),
     "timed out after {timeout}s connecting to Prometheus at {url}"),
    # A read timeout while the body streams in comes as a ConnectionError wrapping it.
    ((requests.exceptions.Timeout, urllib3.exceptions.ReadTimeoutError),
     "timed out after {timeout}s waiting for Prometheus at {url} to answer"),
    ((requests.exceptions.SSLError,),
     "TLS with Prometheus at {url} failed ({detail}): check http:// or https:// in "
     f"{URL_FIELD}; the operator verifies the certificate against the system's CAs or the "
     "bundle REQUESTS_CA_BUNDLE names in its environment"),
    ((requests.exceptions.TooManyRedirects,),
     f"Prometheus at {{url}} redirected more than {DEFAULT_REDIRECT_LIMIT} times: "
     f"{_NOT_THE_API}"),
    ((requests.exceptions.JSONDecodeError,),
     "Prometheus at {url} answered with a body that is not JSON (Content-Type "
     f"{{content_type}}): {_NOT_THE_API}"),
    ((socket.gaierror,),
     f"cannot resolve the host name of {URL_FIELD} ({{url}}): {{detail}}"),
    ((ConnectionRefusedError,),
     "Prometheus at {url} refused the connection (nothing listens there): check the host "
     f"and port in {URL_FIELD}"),
    ((requests.exceptions.ChunkedEncodingError, requests.exceptions.ContentDecodingError,
      urllib3.exceptions.ProtocolError),
     "Prometheus at {url} broke off its answer ({detail})"),
    ((requests.exceptions.ConnectionError,),
     "Prometheus at {url} is unreachable: {detail}"),
    # The built-in types last: raised by PrometheusConnect's urlparse (ValueError) and for a
    # body that is not a query result, never wrapped in a network error's chain above.
    ((requests.exceptions.InvalidURL, requests.exceptions.MissingSchema,
      requests.exceptions.InvalidSchema, requests.exceptions.URLRequired, ValueError),
     f"{URL_FIELD} is not a usable http:// or https:// URL: {{url}}"),
    ((LookupError, TypeError),
     f"Prometheus at {{url}} answered JSON that is not a query result: {_NOT_THE_API}"),
    ((BaseException,),
     "the query to Prometheus at {url} failed: {detail}"),
)


def describe_failure(exc: BaseException, response: requests.Response | None, url: str,
                     timeout_seconds: int) -> str:
    """The message for a query that failed with ``exc``, one per kind of failure.

    ``response`` is the last HTTP answer received, if any. An HTTP error status is worded by
    its code: 401 and 403 (authentication, authorization), 404 (``url`` is not the API's
    base), 407 (the proxy wants credentials), 429 (rate limited), 5xx (Prometheus is
    unavailable, with its own message if it gave one), another 4xx with Prometheus' error
    JSON (it rejected the query: its own message), and the rest by code. Other failures by
    the first matching row of `_FAILURES`. Credentials in URLs are never shown.
    """
    shown = _redact(url)
    if isinstance(exc, PrometheusApiClientException) and response is not None:
        message = _http_failure(response, shown)
    else:
        causes = _causes(exc)
        template = next(text for kinds, text in _FAILURES
                        if any(isinstance(cause, kinds) for cause in causes))
        # The detail is the innermost error of the network layers (socket, TLS, http.client,
        # urllib3), not a built-in error they wrapped (e.g. int() on a bad chunk length).
        layers = [cause for cause in causes
                  if isinstance(cause, (OSError, urllib3.exceptions.HTTPError))
                  and not isinstance(cause, requests.exceptions.RequestException)]
        innermost = (layers or causes)[-1]
        message = template.format(
            url=shown, timeout=timeout_seconds,
            detail=str(innermost) or type(innermost).__name__,
            content_type=(response.headers.get("Content-Type") if response is not None
                          else None) or "none")
    return _redact(message, url)


def _http_failure(response: requests.Response, url: str) -> str:
    """The message for an HTTP answer other than 200 (see `describe_failure`)."""
    code = response.status_code
    try:
        status = f"HTTP {code} {http.HTTPStatus(code).phrase}"
    except ValueError:
        status = f"HTTP {code}"
    error = _prometheus_error(response)
    if code == 401:
        return (f"Prometheus at {url} wants authentication ({status}): the operator sent no "
                "or wrong credentials")
    if code == 403:
        return (f"Prometheus at {url} denied the operator access ({status}): its credentials "
                "are not authorized to query")
    if code == 404:
        return f"Prometheus at {url} has no {QUERY_PATH} ({status}): {_NOT_THE_API}"
    if code == 407:
        return (f"the HTTP proxy to Prometheus at {url} wants authentication ({status}): "
                "check HTTP_PROXY and HTTPS_PROXY in the operator's environment")
    if code == 429:
        return (f"Prometheus at {url} is rate-limiting the operator ({status}): raise "
                "spec.autoscaling.intervalSeconds if this persists")
    if code >= 500:
        return f"Prometheus at {url} is unavailable ({status})" + (
            f": {error}" if error else "")
    if code >= 400 and error:
        return f"Prometheus rejected {QUERY_FIELD}: {error}"
    return f"Prometheus at {url} answered {status}, not a query result: {_NOT_THE_API}"


def _prometheus_error(response: requests.Response) -> str | None:
    """The ``error`` of Prometheus' error JSON ``{"status": "error", "error": ...}``, else
    None (a body from something else: a proxy, a load balancer, another server)."""
    try:
        body = response.json()
    except requests.exceptions.JSONDecodeError:
        return None
    if isinstance(body, dict) and body.get("status") == "error" and body.get("error"):
        return str(body["error"])
    return None


def _causes(exc: BaseException) -> list[BaseException]:
    """``exc`` and the exceptions it wraps, outermost first.

    requests passes the urllib3 error as its first argument, urllib3's MaxRetryError keeps
    it in ``reason``, the rest chain with ``raise ... from`` or inside ``except``.
    """
    causes = [exc]
    while True:
        current = causes[-1]
        inner: BaseException | None
        if isinstance(current, urllib3.exceptions.MaxRetryError):
            inner = current.reason
        elif (isinstance(current, requests.exceptions.RequestException) and current.args
              and isinstance(current.args[0], BaseException)):
            inner = current.args[0]
        else:
            inner = current.__cause__ or current.__context__
        if inner is None or any(inner is cause for cause in causes):
            return causes
        causes.append(inner)


# scheme://userinfo@ — userinfo (user:password) is everything up to the last @ before the
# host; a password may contain an unencoded @.
_USERINFO = re.compile(r"(\b[A-Za-z][A-Za-z0-9+.-]*://)[^/?#\s]*@")


def _redact(text: str, url: str | None = None) -> str:
    """``text`` with the userinfo of every URL in it replaced by ``***``, and the userinfo of
    ``url`` wherever it appears (e.g. quoted without its scheme in an error)."""
    if url is not None:
        found = _USERINFO.match(url)
        if found is not None:
            text = text.replace(found.group(0)[len(found.group(1)):], "***@")
    return _USERINFO.sub(r"\1***@", text)
