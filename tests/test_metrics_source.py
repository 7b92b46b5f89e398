"""How the metrics source words each kind of failure (`describe_failure`'s table), against
a stand-in Prometheus on 127.0.0.1 (one server thread, each answer scripted by the test)
or, where a server cannot produce the failure, a patched resolver or a proxy setting."""

from __future__ import annotations

import datetime as dt
import http.server
import ipaddress
import json
import re
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from deepseek_operator.autoscaler.metrics_source import (
    MetricsUnavailable,
    describe_failure,
    query_qps,
)

Answer = Callable[[http.server.BaseHTTPRequestHandler], None]
URL = re.escape("spec.autoscaling.prometheus.url")
QUERY = re.escape("spec.autoscaling.prometheus.query")
NOT_THE_API = f"{URL} must be the base URL of the Prometheus HTTP API"
# The longest a scripted answer waits for the test to let it go (see `Stub.release`).
HOLD_SECONDS = 10


class Stub:
    """A one-thread HTTP server on 127.0.0.1 that answers every request with ``answer``."""

    def __init__(self) -> None:
        self.answer: Answer = lambda handler: reply(handler, 404, b"")
        self.release = threading.Event()
        stub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                stub.answer(self)

            def log_message(self, format: str, *args: object) -> None:
                """Quiet: the tests read the client's side."""

        self.server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
        # A short poll interval: shutdown() waits for one.
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        """The stub's base URL."""
        return f"http://127.0.0.1:{self.server.server_port}"

    def stop(self) -> None:
        """Let a held answer go, stop serving and join the thread."""
        self.release.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(HOLD_SECONDS)


@pytest.fixture
def stub() -> Iterator[Stub]:
    """A stand-in Prometheus, stopped (its thread joined) after the test."""
    server = Stub()
    yield server
    server.stop()
    assert not server.thread.is_alive()


def reply(handler: http.server.BaseHTTPRequestHandler, status: int, body: bytes,
          content_type: str = "application/json", **headers: str) -> None:
    """Answer ``status`` with ``body``."""
    handler.send_response(status)
    handler.send_header("Content-Type", content_type)
    handler.send_header("Content-Length", str(len(body)))
    for name, value in headers.items():
        handler.send_header(name, value)
    handler.end_headers()
    handler.wfile.write(body)


def prometheus_error(error_type: str, error: str) -> bytes:
    """Prometheus' error JSON."""
    return json.dumps({"status": "error", "errorType": error_type, "error": error}).encode()


def failure(url: str, timeout_seconds: int = 1) -> str:
    """The MetricsUnavailable message of ``vector(1)`` at ``url``."""
    with pytest.raises(MetricsUnavailable) as caught:
        query_qps(url, "vector(1)", timeout_seconds=timeout_seconds)
    return str(caught.value)


def test_a_summed_vector_is_requests_per_second_and_an_empty_one_none(stub: Stub) -> None:
    vector = [{"metric": {"pod": "a"}, "value": [1, "1.5"]},
              {"metric": {"pod": "b"}, "value": [1, "2"]}]
    stub.answer = lambda h: reply(h, 200, json.dumps(
        {"status": "success", "data": {"resultType": "vector", "result": vector}}).encode())
    assert query_qps(stub.url, "vector(1)") == 3.5
    stub.answer = lambda h: reply(h, 200, json.dumps(
        {"status": "success", "data": {"resultType": "vector", "result": []}}).encode())
    assert query_qps(stub.url, "vector(1)") is None


def test_a_prometheus_that_answers_after_the_timeout_is_a_timeout(stub: Stub) -> None:
    def late(handler: http.server.BaseHTTPRequestHandler) -> None:
        stub.release.wait(HOLD_SECONDS)
        reply(handler, 200, b"{}")

    stub.answer = late
    message = failure(stub.url, timeout_seconds=1)
    assert message == (f"timed out after 1s waiting for Prometheus at {stub.url} to answer")


@pytest.fixture
def unaccepting_url() -> Iterator[str]:
    """A URL whose port never completes a connection: its listen queue (backlog 0) is full
    of connections nobody accepts, so the kernel drops further SYNs."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    for _ in range(3):
        filler = socket.socket()
        filler.setblocking(False)
        filler.connect_ex(("127.0.0.1", port))
        fillers.append(filler)
    yield f"http://127.0.0.1:{port}"
    for filler in fillers:
        filler.close()
    listener.close()


def test_a_connection_not_accepted_in_time_is_a_connect_timeout(unaccepting_url: str) -> None:
    assert failure(unaccepting_url, timeout_seconds=1) == (
        f"timed out after 1s connecting to Prometheus at {unaccepting_url}")


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A port bound (so nobody else takes it) but not listening: connections are refused."""
    bound = socket.socket()
    bound.bind(("127.0.0.1", 0))
    yield bound.getsockname()[1]
    bound.close()


def test_a_refused_connection_names_the_url_field(closed_port: int) -> None:
    url = f"http://127.0.0.1:{closed_port}"
    assert failure(url) == (f"Prometheus at {url} refused the connection (nothing listens "
                            "there): check the host and port in spec.autoscaling.prometheus.url")


@pytest.fixture
def no_dns(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every host name fails to resolve, as for a typo in a Service name."""
    def getaddrinfo(*args: object, **kwargs: object) -> list[object]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


@pytest.mark.usefixtures("no_dns")
def test_a_host_that_does_not_resolve_names_the_url_field() -> None:
    assert failure("http://prometheus.monitoring:9090") == (
        "cannot resolve the host name of spec.autoscaling.prometheus.url "
        "(http://prometheus.monitoring:9090): [Errno -2] Name or service not known")


def test_tls_to_a_plain_http_port_says_check_the_scheme(stub: Stub) -> None:
    url = stub.url.replace("http://", "https://")
    assert re.fullmatch(
        rf"TLS with Prometheus at {re.escape(url)} failed \(.*WRONG_VERSION_NUMBER.*\): "
        rf"check http:// or https:// in {URL}; the operator verifies the certificate .*",
        failure(url))


@pytest.fixture
def tls_stub(stub: Stub, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """The stub behind TLS with a certificate for 127.0.0.1 signed by a CA of its own;
    (its https:// URL, the CA's PEM file)."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test-ca")])
    now = dt.datetime.now(dt.UTC)

    def cert(subject: x509.Name, key: ec.EllipticCurvePrivateKey, ca: bool) -> x509.Certificate:
        builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(ca_name)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - dt.timedelta(minutes=1))
                   .not_valid_after(now + dt.timedelta(hours=1))
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=None), True))
        if not ca:
            builder = builder.add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        return builder.sign(ca_key, hashes.SHA256())

    key = ec.generate_private_key(ec.SECP256R1())
    ca_file, cert_file, key_file = (tmp_path / n for n in ("ca.pem", "tls.pem", "tls.key"))
    ca_file.write_bytes(cert(ca_name, ca_key, True).public_bytes(serialization.Encoding.PEM))
    cert_file.write_bytes(cert(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "p")]),
                               key, False).public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    stub.server.socket = context.wrap_socket(stub.server.socket, server_side=True)
    stub.answer = lambda handler: reply(handler, 200, json.dumps(
        {"status": "success", "data": {"resultType": "vector",
                                       "result": [{"metric": {}, "value": [0, "2.5"]}]}}
    ).encode())
    yield stub.url.replace("http://", "https://"), ca_file


def test_a_certificate_the_operator_does_not_trust_is_refused(
        tls_stub: tuple[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    url, ca_file = tls_stub
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    assert re.fullmatch(rf"TLS with Prometheus at {re.escape(url)} failed "
                        r"\(.*CERTIFICATE_VERIFY_FAILED.*\): .*REQUESTS_CA_BUNDLE.*",
                        failure(url))
    # Trusted through REQUESTS_CA_BUNDLE: the query is answered.
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(ca_file))
    assert query_qps(url, "up") == 2.5


@pytest.fixture
def refusing_proxy(monkeypatch: pytest.MonkeyPatch, closed_port: int) -> None:
    """The operator's environment names an HTTP proxy (with credentials) that refuses."""
    for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", f"http://proxyuser:proxysecret@127.0.0.1:{closed_port}")


@pytest.mark.usefixtures("refusing_proxy")
def test_a_failing_proxy_is_blamed_not_the_prometheus_url() -> None:
    message = failure("http://prometheus.monitoring:9090")
    assert message == (
        "the HTTP proxy to Prometheus at http://prometheus.monitoring:9090 failed "
        "([Errno 111] Connection refused): check HTTP_PROXY, HTTPS_PROXY and NO_PROXY in "
        "the operator's environment")


def test_a_redirect_loop_names_the_url_field(stub: Stub) -> None:
    stub.answer = lambda h: reply(h, 302, b"", Location=h.path)
    assert failure(stub.url) == (
        f"Prometheus at {stub.url} redirected more than 30 times: "
        "spec.autoscaling.prometheus.url must be the base URL of the Prometheus HTTP API")


def _short_body(handler: http.server.BaseHTTPRequestHandler) -> None:
    handler.send_response(200)
    handler.send_header("Content-Length", "100")
    handler.end_headers()
    handler.wfile.write(b'{"sta')


def _bad_chunk(handler: http.server.BaseHTTPRequestHandler) -> None:
    handler.wfile.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n")


def _no_answer(handler: http.server.BaseHTTPRequestHandler) -> None:
    handler.close_connection = True


@pytest.mark.parametrize(("answer", "detail"), [
    (_short_body, r"IncompleteRead\(5 bytes read, 95 more expected\)"),
    (_bad_chunk, r"InvalidChunkLength\(got length b'zz\\r\\n', 0 bytes read\)"),
    (_no_answer, r"Remote end closed connection without response"),
], ids=["content-length-not-reached", "bad-chunk-length", "closed-without-answer"])
def test_an_answer_broken_off_is_reported_as_such(stub: Stub, answer: Answer,
                                                  detail: str) -> None:
    stub.answer = answer
    assert re.fullmatch(rf"Prometheus at {re.escape(stub.url)} broke off its answer "
                        rf"\({detail}\)", failure(stub.url))


@pytest.mark.parametrize("url", [
    "ftp://prometheus:9090", "prometheus:9090", "http://[::1", "http://prometheus:port",
    "http:///api",
])
def test_an_invalid_url_names_the_url_field(url: str) -> None:
    assert failure(url) == (
        f"spec.autoscaling.prometheus.url is not a usable http:// or https:// URL: {url}")


def test_a_body_that_is_not_json_names_the_url_field_and_the_content_type(stub: Stub) -> None:
    stub.answer = lambda h: reply(h, 200, b"<html>Sign in</html>", "text/html")
    assert failure(stub.url) == (
        f"Prometheus at {stub.url} answered with a body that is not JSON (Content-Type "
        "text/html): spec.autoscaling.prometheus.url must be the base URL of the Prometheus "
        "HTTP API")


@pytest.mark.parametrize("body", [
    {}, [], {"data": []}, {"data": {"result": {"a": 1}}},
    {"status": "success", "data": {"resultType": "vector",
                                   "result": [{"metric": {}, "value": 5}]}},
    {"status": "success", "data": {"resultType": "scalar", "result": [1]}},
], ids=["empty-object", "list", "data-list", "result-object", "value-not-a-pair",
        "scalar-without-value"])
def test_json_that_is_not_a_query_result_names_the_url_field(stub: Stub,
                                                             body: object) -> None:
    stub.answer = lambda h: reply(h, 200, json.dumps(body).encode())
    assert failure(stub.url) == (
        f"Prometheus at {stub.url} answered JSON that is not a query result: "
        "spec.autoscaling.prometheus.url must be the base URL of the Prometheus HTTP API")


@pytest.mark.parametrize(("status", "body", "message"), [
    (400, prometheus_error("bad_data", "1:5: parse error: unclosed left parenthesis"),
     rf"Prometheus rejected {QUERY}: 1:5: parse error: unclosed left parenthesis"),
    (422, prometheus_error("execution", "query processing would load too many samples"),
     rf"Prometheus rejected {QUERY}: query processing would load too many samples"),
    (401, b"Unauthorized\n",
     r"Prometheus at {url} wants authentication \(HTTP 401 Unauthorized\): the operator "
     r"sent no or wrong credentials"),
    (403, b"Forbidden\n",
     r"Prometheus at {url} denied the operator access \(HTTP 403 Forbidden\): its "
     r"credentials are not authorized to query"),
    (404, b"404 page not found\n",
     rf"Prometheus at {{url}} has no /api/v1/query \(HTTP 404 Not Found\): {NOT_THE_API}"),
    (407, b"",
     r"the HTTP proxy to Prometheus at {url} wants authentication \(HTTP 407 Proxy "
     r"Authentication Required\): check HTTP_PROXY and HTTPS_PROXY in the operator's "
     r"environment"),
    (429, b"slow down",
     r"Prometheus at {url} is rate-limiting the operator \(HTTP 429 Too Many Requests\): "
     r"raise spec\.autoscaling\.intervalSeconds if this persists"),
    (500, b"oops", r"Prometheus at {url} is unavailable \(HTTP 500 Internal Server Error\)"),
    (502, b"<html>Bad Gateway</html>",
     r"Prometheus at {url} is unavailable \(HTTP 502 Bad Gateway\)"),
    (503, b"Service Unavailable",
     r"Prometheus at {url} is unavailable \(HTTP 503 Service Unavailable\)"),
    (503, prometheus_error("timeout", "query timed out in expression evaluation"),
     r"Prometheus at {url} is unavailable \(HTTP 503 Service Unavailable\): query timed out "
     r"in expression evaluation"),
    (599, b"", r"Prometheus at {url} is unavailable \(HTTP 599\)"),
    (400, b"<html>Bad Request</html>",
     rf"Prometheus at {{url}} answered HTTP 400 Bad Request, not a query result: "
     rf"{NOT_THE_API}"),
    (405, b"Method Not Allowed",
     rf"Prometheus at {{url}} answered HTTP 405 Method Not Allowed, not a query result: "
     rf"{NOT_THE_API}"),
    (204, b"",
     rf"Prometheus at {{url}} answered HTTP 204 No Content, not a query result: "
     rf"{NOT_THE_API}"),
], ids=["400-prometheus", "422-prometheus", "401", "403", "404", "407", "429", "500", "502",
        "503", "503-prometheus", "599", "400-not-prometheus", "405", "204"])
def test_an_http_error_is_worded_by_its_status(stub: Stub, status: int, body: bytes,
                                               message: str) -> None:
    stub.answer = lambda h: reply(h, status, body)
    assert re.fullmatch(message.replace("{url}", re.escape(stub.url)), failure(stub.url))


def test_a_failure_outside_the_table_is_still_worded() -> None:
    assert describe_failure(requests.exceptions.RetryError("gave up"), None,
                            "http://prometheus:9090", 5) == (
        "the query to Prometheus at http://prometheus:9090 failed: gave up")


SECRET = "s3cr@t"


@pytest.mark.parametrize("kind", ["tls", "404", "refused", "dns", "invalid-url", "timeout"])
def test_no_message_shows_the_credentials_of_the_url(
        stub: Stub, closed_port: int, request: pytest.FixtureRequest, kind: str) -> None:
    port = stub.server.server_port
    stub.answer = lambda h: reply(h, 404, b"")
    url = {
        "tls": f"https://admin:{SECRET}@127.0.0.1:{port}",
        "404": f"http://admin:{SECRET}@127.0.0.1:{port}/wrong",
        "refused": f"http://admin:{SECRET}@127.0.0.1:{closed_port}",
        "dns": f"http://admin:{SECRET}@prometheus.monitoring:9090",
        "invalid-url": f"http://admin:{SECRET}@prometheus:port",
        "timeout": f"http://admin:{SECRET}@127.0.0.1:{port}",
    }[kind]
    if kind == "dns":
        request.getfixturevalue("no_dns")
    if kind == "timeout":
        def late(handler: http.server.BaseHTTPRequestHandler) -> None:
            stub.release.wait(HOLD_SECONDS)

        stub.answer = late
    message = failure(url)
    assert SECRET not in message and "admin" not in message
    assert "://***@" in message


def test_credentials_quoted_in_a_cause_are_redacted_too() -> None:
    url = f"http://admin:{SECRET}@prometheus:9090"
    cause = requests.exceptions.RequestException(
        f"cannot use {url} or 'admin:{SECRET}@prometheus:9090' or https://u:p@proxy:3128")
    assert describe_failure(cause, None, url, 5) == (
        "the query to Prometheus at http://***@prometheus:9090 failed: cannot use "
        "http://***@prometheus:9090 or '***@prometheus:9090' or https://***@proxy:3128")
