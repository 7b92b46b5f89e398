"""Benchmark: what the gateway adds, against the engine stand-in called directly.

On the local control plane (brought up if needed, stopped again if this started it): one
DeepSeekDeployment whose status says one replica is ready (written here, no operator, so
nothing else uses the shared CPUs), one OpenAI stand-in streaming tokens at a fixed rate
(`--token-interval`, chunks stamped with their send time), one gateway process with its
own ServiceAccount, auth cached (the default 10 s) and audit on (stdout and a file). The
caller's token is a real TokenRequest token; every request is authorized.

Phases, each run first direct, then through the gateway, same process, same stand-in:

1. **Requests**: `--request-concurrency` (1 and 16) callers sending non-streamed chat
   requests back to back for `--phase-seconds`; latency per request, p50/p99. One caller
   shows the latency the gateway adds to a request; 16 callers back to back saturate it,
   so there the difference is mostly queueing and the rate is its request capacity.
2. **Streams** at 64 and 256 concurrent streams (`--concurrency`) for `--phase-seconds`:
   chunks per second over all streams, and each chunk's latency (arrival minus the
   stand-in's send stamp), p50/p99.
3. **Data protection** at `--dlp-concurrency` (64 and 256) streams, on the same run: a second
   deployment whose stand-in echoes a prompt with planted data (an e-mail, an SSN, a
   card number...) four characters a chunk, through a second gateway started with
   `--no-data-protection` (off), then through the main gateway with the deployment's
   policy set to `audit` (detection) and then `redact` (detection and redaction).
   Chunks/s and chunk latency of each, in `--dlp-rounds` (3) rounds, the median round of
   each reported; the cost is 1 - on/off chunks/s (goal <= 20 %) and the added p99 is on
   minus off. Before that, the detectors alone in process
   (e2e/bench/detect.py): MB/s on a 10 MB corpus and the time bound on hostile 1 MB
   inputs.
4. **Soak**: 64 streams through the gateway for `--soak-seconds` (the issue's 10 minutes
   is 600; a shorter run is labelled as such), the gateway's RSS sampled every 5 s.

Added latency = gateway minus direct at the same percentile. The load generator, the
stand-in and the gateway share this machine's cores, so absolute numbers include their
contention; the comparison is what matters. Writes JSON and a PNG to `--out`.
`make bench-gateway` (BENCH_GATEWAY_SOAK_SECONDS=600 for the full soak).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from kubernetes import client

from deepseek_operator.api.constants import GROUP, PLURAL, VERSION
from e2e.bench import detect as detect_bench
from e2e.cluster import build, controlplane
from e2e.gateway_rig import (
    GatewayProcess,
    StandInProcess,
    allow,
    ensure_account,
    gateway_identity,
    token,
)
from e2e.kube import api_client
from e2e.operator_process import install_manifests

SENT_AT = re.compile(rb'"sent_at": ([0-9.]+)')
GOALS = {"throughput_ratio": 0.90, "added_p99_request_ms": 5.0, "added_p99_chunk_ms": 2.0,
         "data_protection_cost": 0.20}
DLP_PROMPT = (
    "Please forward the summary to jane.doe@example.com and bill the card 4111 1111 1111 "
    "1111; the customer's SSN is 078-05-1120 and the phone +44 20 7946 0958. " * 4
    + "The rest of this message is ordinary text about the weather, the schedule for next "
      "week and the order of the agenda items, with no data worth hiding at all. " * 2)
"""What the echoing stand-in streams back (~740 characters, 4 a chunk)."""


@dataclass
class PhaseResult:
    """What one phase measured (seconds unless the name says otherwise)."""

    requests: int = 0
    errors: int = 0
    chunks: int = 0
    duration: float = 0.0
    request_latencies: list[float] = field(default_factory=list)
    chunk_latencies: list[float] = field(default_factory=list)
    ttfb: list[float] = field(default_factory=list)

    def summary(self) -> dict[str, float]:
        """Counts, rates and percentiles in ms."""
        return {"requests": self.requests, "errors": self.errors, "chunks": self.chunks,
                "duration_s": round(self.duration, 2),
                "chunks_per_s": round(self.chunks / self.duration, 1) if self.duration else 0,
                "requests_per_s": round(self.requests / self.duration, 1)
                if self.duration else 0,
                "request_p50_ms": ms(pct(self.request_latencies, 50)),
                "request_p99_ms": ms(pct(self.request_latencies, 99)),
                "chunk_p50_ms": ms(pct(self.chunk_latencies, 50)),
                "chunk_p99_ms": ms(pct(self.chunk_latencies, 99)),
                "ttfb_p50_ms": ms(pct(self.ttfb, 50)), "ttfb_p99_ms": ms(pct(self.ttfb, 99))}


def pct(values: list[float], q: float) -> float:
    """The q-th percentile (nearest rank), 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


def ms(seconds: float) -> float:
    """Seconds as milliseconds, 3 decimals."""
    return round(seconds * 1000, 3)


async def run_phase(base: str, headers: dict[str, str], body: dict[str, Any], workers: int,
                    seconds: float, stream: bool) -> PhaseResult:
    """`workers` callers posting `body` to `base` back to back for `seconds`."""
    result = PhaseResult()
    deadline = time.monotonic() + seconds
    data = json.dumps(body).encode()
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=120)

    async def worker(session: aiohttp.ClientSession) -> None:
        while time.monotonic() < deadline:
            started = time.monotonic()
            try:
                async with session.post(base + "/v1/chat/completions", data=data,
                                        headers=headers) as response:
                    if response.status != 200:
                        await response.read()
                        result.errors += 1
                        continue
                    if not stream:
                        await response.read()
                    else:
                        first = True
                        async for chunk in response.content.iter_any():
                            now_wall = time.time()
                            if first:
                                result.ttfb.append(time.monotonic() - started)
                                first = False
                            for match in SENT_AT.finditer(chunk):
                                result.chunk_latencies.append(now_wall - float(match[1]))
                                result.chunks += 1
            except (aiohttp.ClientError, TimeoutError):
                result.errors += 1
                continue
            result.requests += 1
            result.request_latencies.append(time.monotonic() - started)

    began = time.monotonic()
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        await asyncio.gather(*(worker(session) for _ in range(workers)))
    result.duration = time.monotonic() - began
    return result


async def soak(gateway: GatewayProcess, headers: dict[str, str], body: dict[str, Any],
               workers: int, seconds: float) -> tuple[PhaseResult, list[tuple[float, int]]]:
    """Stream through the gateway for `seconds`, sampling its RSS (KiB) every 5 s."""
    samples: list[tuple[float, int]] = []
    began = time.monotonic()

    async def sample() -> None:
        while time.monotonic() - began < seconds:
            samples.append((time.monotonic() - began, gateway.rss_kib()))
            await asyncio.sleep(5)
        samples.append((time.monotonic() - began, gateway.rss_kib()))

    phase, _ = await asyncio.gather(
        run_phase(gateway.url, headers, body, workers, seconds, stream=True), sample())
    return phase, samples


def prepare(workdir: Path, token_interval: float) -> tuple[StandInProcess, GatewayProcess,
                                                          str, str, client.ApiClient]:
    """Control plane objects, stand-in and gateway; returns them, the caller's token and
    the namespace."""
    kubeconfig = controlplane.up()
    kube = api_client(kubeconfig)
    install_manifests(build.build_all()["kubectl"], kubeconfig)
    namespace = f"bench-gw-{uuid.uuid4().hex[:6]}"
    served = f"bench-{uuid.uuid4().hex[:6]}"
    engine = StandInProcess(served, workdir / "engine.log", [
        "--token-interval-seconds", str(token_interval), "--max-num-seqs", "4096",
        "--stamp-chunks"]).start()
    ensure_account(kube, namespace, "bench")
    allow(kube, namespace, "m", "m-query",
          [{"kind": "ServiceAccount", "name": "bench", "namespace": namespace}])
    api = client.CustomObjectsApi(kube)
    api.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "DeepSeekDeployment",
        "metadata": {"name": "m"},
        "spec": {"model": {"name": "deepseek-r1-distill-qwen-1.5b", "servedName": served},
                 "gpu": {"maxConcurrentSequences": 4096}, "autoscaling": {"mode": "none"},
                 "service": {"port": engine.port}}})
    # The operator's status, written by hand: one replica ready (module docstring).
    api.patch_namespaced_custom_object_status(GROUP, VERSION, namespace, PLURAL, "m", {
        "status": {"replicas": 1, "readyReplicas": 1}})
    gateway = GatewayProcess(
        gateway_identity(kube, kube.configuration.host, kube.configuration.ssl_ca_cert,
                         workdir), workdir / "gateway",
        ["--audit-file", str(workdir / "audit.jsonl")])
    try:
        gateway.start()
    except BaseException:
        gateway.stop()
        engine.stop()
        raise
    return engine, gateway, token(kube, namespace, "bench"), namespace, kube


def prepare_dlp(kube: client.ApiClient, namespace: str, workdir: Path,
                token_interval: float) -> tuple[StandInProcess, GatewayProcess]:
    """Deployment `dlp` with an echoing stand-in (4 characters a chunk), the caller allowed
    to query it, and a second gateway with data protection off."""
    served = f"bench-dlp-{uuid.uuid4().hex[:6]}"
    engine = StandInProcess(served, workdir / "engine-dlp.log", [
        "--token-interval-seconds", str(token_interval), "--max-num-seqs", "4096",
        "--stamp-chunks", "--echo", "4"]).start()
    off: GatewayProcess | None = None
    try:
        allow(kube, namespace, "dlp", "dlp-query",
              [{"kind": "ServiceAccount", "name": "bench", "namespace": namespace}])
        api = client.CustomObjectsApi(kube)
        api.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, {
            "apiVersion": f"{GROUP}/{VERSION}", "kind": "DeepSeekDeployment",
            "metadata": {"name": "dlp"},
            "spec": {"model": {"name": "deepseek-r1-distill-qwen-1.5b", "servedName": served},
                     "gpu": {"maxConcurrentSequences": 4096}, "autoscaling": {"mode": "none"},
                     "service": {"port": engine.port}}})
        api.patch_namespaced_custom_object_status(GROUP, VERSION, namespace, PLURAL, "dlp", {
            "status": {"replicas": 1, "readyReplicas": 1}})
        set_dlp_mode(kube, namespace, "audit")
        (workdir / "off").mkdir(exist_ok=True)
        off = GatewayProcess(
            gateway_identity(kube, kube.configuration.host, kube.configuration.ssl_ca_cert,
                             workdir / "off"), workdir / "gateway-off",
            ["--no-data-protection", "--audit-file", str(workdir / "audit-off.jsonl")])
        off.start()
    except BaseException:
        if off is not None:
            off.stop()
        engine.stop()
        raise
    return engine, off


def set_dlp_mode(kube: client.ApiClient, namespace: str, mode: str) -> None:
    """The `dlp` deployment's policy ConfigMap with dataProtection.mode = `mode`."""
    core = client.CoreV1Api(kube)
    data = {"policy.yaml": f"dataProtection: {{mode: {mode}}}\n"}
    try:
        core.create_namespaced_config_map(namespace, {
            "metadata": {"name": "dlp-gateway-policy", "labels": {
                "app.kubernetes.io/component": "gateway-policy",
                "deepseek-operator.io/deployment": "dlp"}}, "data": data})
    except client.ApiException as error:
        if error.status != 409:
            raise
        core.patch_namespaced_config_map("dlp-gateway-policy", namespace, {"data": data})


async def wait_mode(gateway: GatewayProcess, headers: dict[str, str], served: str,
                    redacted: bool) -> None:
    """Until the gateway answers the planted prompt redacted (or not)."""
    body = json.dumps({"model": served, "messages": [{"role": "user",
                                                      "content": "078-05-1120"}]})
    deadline = time.monotonic() + 60
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            async with session.post(gateway.url + "/v1/chat/completions", data=body,
                                    headers=headers) as response:
                if ("[REDACTED:" in await response.text()) == redacted:
                    return
            await asyncio.sleep(0.5)
    raise RuntimeError("the data-protection policy did not apply within 60 s")


async def measure_dlp(args: argparse.Namespace, kube: client.ApiClient, namespace: str,
                      gateway: GatewayProcess, off: GatewayProcess, engine: StandInProcess,
                      auth: dict[str, str], concurrency: int) -> dict[str, Any]:
    """`concurrency` streams with data protection off, in audit mode and in redact mode
    (module docstring, phase 3)."""
    body = {"model": engine.model, "stream": True,
            "messages": [{"role": "user", "content": DLP_PROMPT}]}
    entry: dict[str, Any] = {"concurrency": concurrency,
                             "prompt_characters": len(DLP_PROMPT), "rounds": []}
    # Rounds of off, audit, redact: the machine's other load lands on all three alike.
    for round_index in range(args.dlp_rounds):
        measured: dict[str, Any] = {}
        for label, target, mode in (("off", off, "audit"), ("audit", gateway, "audit"),
                                    ("redact", gateway, "redact")):
            set_dlp_mode(kube, namespace, mode)
            await wait_mode(target, auth, engine.model, redacted=mode == "redact")
            print(f"{concurrency} streams, data protection {label}, round "
                  f"{round_index + 1} ...", file=sys.stderr, flush=True)
            measured[label] = (await run_phase(target.url, auth, body, concurrency,
                                               args.phase_seconds, True)).summary()
        entry["rounds"].append(measured)
    for label in ("off", "audit", "redact"):
        # Per label: the median round (by chunks/s).
        ranked = sorted((r[label] for r in entry["rounds"]), key=lambda s: s["chunks_per_s"])
        entry[label] = ranked[len(ranked) // 2]
    off_rate = entry["off"]["chunks_per_s"] or 1
    for label in ("audit", "redact"):
        entry[f"{label}_cost"] = round(1 - entry[label]["chunks_per_s"] / off_rate, 3)
        entry[f"{label}_added_chunk_p99_ms"] = round(
            entry[label]["chunk_p99_ms"] - entry["off"]["chunk_p99_ms"], 3)
    return entry


def _dlp_report(dlp: dict[str, Any], token_interval: float) -> list[str]:
    """Lines of one data-protection phase."""
    lines: list[str] = []
    lines.append(f"data protection, {dlp['concurrency']} streams echoing planted data "
                 f"({token_interval} s per 4-character chunk; median of "
                 f"{len(dlp['rounds'])} rounds; each round's chunks/s off/audit/redact: "
                 + "; ".join("/".join(f"{r[k]['chunks_per_s']:.0f}" for k in
                                      ("off", "audit", "redact")) for r in dlp["rounds"])
                 + ")")
    lines.append(f"  {'':10} {'chunks/s':>9} {'chunk p50':>10} {'chunk p99':>10} "
                 f"{'errors':>7}")
    for label in ("off", "audit", "redact"):
        s = dlp[label]
        lines.append(f"  {label:10} {s['chunks_per_s']:>9} {s['chunk_p50_ms']:>10} "
                     f"{s['chunk_p99_ms']:>10} {s['errors']:>7}")
    for label in ("audit", "redact"):
        lines.append(f"  {label}: cost {dlp[label + '_cost']:.1%} of chunks/s (goal <= "
                     f"{GOALS['data_protection_cost']:.0%}), added chunk p99 "
                     f"{dlp[label + '_added_chunk_p99_ms']} ms")
    return lines


def report(results: dict[str, Any]) -> str:
    """The table printed at the end."""
    lines = []
    for callers, req in results["requests"].items():
        lines.append(f"requests ({callers} callers back to back, non-streamed)")
        lines.append(f"  {'':10} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}")
        for via in ("direct", "gateway"):
            s = req[via]
            lines.append(f"  {via:10} {s['requests_per_s']:>8} {s['request_p50_ms']:>8} "
                         f"{s['request_p99_ms']:>8} {s['errors']:>7}")
        lines.append(f"  added: p50 {req['added_p50_ms']} ms, p99 {req['added_p99_ms']} ms "
                     f"(goal <= {GOALS['added_p99_request_ms']} ms at p99)")
    for concurrency, phase in results["streams"].items():
        lines.append(f"streams x {concurrency} ({results['token_interval_s']} s per token)")
        lines.append(f"  {'':10} {'chunks/s':>9} {'chunk p50':>10} {'chunk p99':>10} "
                     f"{'ttfb p50':>9} {'ttfb p99':>9} {'errors':>7}")
        for via in ("direct", "gateway"):
            s = phase[via]
            lines.append(f"  {via:10} {s['chunks_per_s']:>9} {s['chunk_p50_ms']:>10} "
                         f"{s['chunk_p99_ms']:>10} {s['ttfb_p50_ms']:>9} "
                         f"{s['ttfb_p99_ms']:>9} {s['errors']:>7}")
        lines.append(f"  throughput ratio {phase['throughput_ratio']:.3f} (goal >= "
                     f"{GOALS['throughput_ratio']}); added per chunk p50 "
                     f"{phase['added_chunk_p50_ms']} ms, p99 {phase['added_chunk_p99_ms']} ms "
                     f"(goal <= {GOALS['added_p99_chunk_ms']} ms)")
    for dlp in results["data_protection"].values():
        lines.extend(_dlp_report(dlp, results["token_interval_s"]))
    lines.append(detect_bench.report(results["detectors"]))
    rss = results["soak"]
    label = "" if rss["seconds"] >= 600 else " (SHORT SOAK, not the 10-minute one)"
    lines.append(f"soak {rss['seconds']:.0f} s x {rss['streams']} streams{label}: RSS start "
                 f"{rss['rss_start_mib']} MiB, end {rss['rss_end_mib']} MiB, max "
                 f"{rss['rss_max_mib']} MiB; {rss['phase']['chunks_per_s']} chunks/s, "
                 f"{rss['phase']['errors']} errors")
    return "\n".join(lines)


def plot(results: dict[str, Any], path: Path) -> None:
    """RSS over the soak, and chunks/s direct vs gateway."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    samples = results["soak"]["rss_samples"]
    left.plot([t for t, _ in samples], [kib / 1024 for _, kib in samples], marker=".")
    left.set_xlabel("seconds into the soak")
    left.set_ylabel("gateway RSS, MiB")
    left.set_ylim(bottom=0)
    left.set_title(f"RSS, {results['soak']['streams']} streams")
    labels = list(results["streams"])
    direct = [results["streams"][c]["direct"]["chunks_per_s"] for c in labels]
    via = [results["streams"][c]["gateway"]["chunks_per_s"] for c in labels]
    xs = range(len(labels))
    right.bar([x - 0.2 for x in xs], direct, width=0.4, label="direct")
    right.bar([x + 0.2 for x in xs], via, width=0.4, label="gateway")
    right.set_xticks(list(xs), [f"{c} streams" for c in labels])
    right.set_ylabel("chunks/s")
    right.legend()
    right.set_title("streamed chunks per second")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


async def measure(args: argparse.Namespace, gateway: GatewayProcess, engine: StandInProcess,
                  bearer: str, dlp: tuple[StandInProcess, GatewayProcess],
                  kube: client.ApiClient, namespace: str) -> dict[str, Any]:
    """Every phase (module docstring)."""
    served = engine.model
    auth = {"Authorization": f"Bearer {bearer}", "Content-Type": "application/json"}
    plain = {"Content-Type": "application/json"}
    request_body = {"model": served, "messages": [{"role": "user", "content": "Hi"}]}
    stream_body = {**request_body, "stream": True, "max_tokens": args.tokens}
    targets: dict[str, tuple[str, dict[str, str]]] = {"direct": (engine.url, plain),
                                                      "gateway": (gateway.url, auth)}
    phase: Callable[..., Awaitable[PhaseResult]] = run_phase
    results: dict[str, Any] = {"token_interval_s": args.token_interval,
                               "tokens_per_stream": args.tokens,
                               "request_concurrency": args.request_concurrency,
                               "phase_seconds": args.phase_seconds}
    # Warm-up: connections, the auth cache, the audit file.
    await phase(gateway.url, auth, request_body, 4, 2, False)
    results["requests"] = {}
    for callers in args.request_concurrency:
        requests: dict[str, Any] = {}
        for via, (base, headers) in targets.items():
            print(f"requests x {callers} via {via} ...", file=sys.stderr, flush=True)
            requests[via] = (await phase(base, headers, request_body, callers,
                                         args.phase_seconds, False)).summary()
        requests["added_p50_ms"] = round(requests["gateway"]["request_p50_ms"]
                                         - requests["direct"]["request_p50_ms"], 3)
        requests["added_p99_ms"] = round(requests["gateway"]["request_p99_ms"]
                                         - requests["direct"]["request_p99_ms"], 3)
        results["requests"][str(callers)] = requests
    results["streams"] = {}
    for concurrency in args.concurrency:
        entry: dict[str, Any] = {}
        for via, (base, headers) in targets.items():
            print(f"{concurrency} streams via {via} ...", file=sys.stderr, flush=True)
            entry[via] = (await phase(base, headers, stream_body, concurrency,
                                      args.phase_seconds, True)).summary()
        direct_rate = entry["direct"]["chunks_per_s"] or 1
        entry["throughput_ratio"] = round(entry["gateway"]["chunks_per_s"] / direct_rate, 3)
        entry["added_chunk_p50_ms"] = round(entry["gateway"]["chunk_p50_ms"]
                                            - entry["direct"]["chunk_p50_ms"], 3)
        entry["added_chunk_p99_ms"] = round(entry["gateway"]["chunk_p99_ms"]
                                            - entry["direct"]["chunk_p99_ms"], 3)
        results["streams"][str(concurrency)] = entry
    results["data_protection"] = {
        str(concurrency): await measure_dlp(args, kube, namespace, gateway, dlp[1], dlp[0],
                                            auth, concurrency)
        for concurrency in args.dlp_concurrency}
    print(f"soak {args.soak_seconds:.0f} s ...", file=sys.stderr, flush=True)
    soaked, samples = await soak(gateway, auth, stream_body, args.soak_streams,
                                 args.soak_seconds)
    rss = [kib for _, kib in samples]
    results["soak"] = {"seconds": args.soak_seconds, "streams": args.soak_streams,
                       "phase": soaked.summary(), "rss_samples": samples,
                       "rss_start_mib": round(rss[0] / 1024, 1),
                       "rss_end_mib": round(rss[-1] / 1024, 1),
                       "rss_max_mib": round(max(rss) / 1024, 1),
                       "rss_median_first_half_mib": round(
                           statistics.median(rss[:max(1, len(rss) // 2)]) / 1024, 1),
                       "rss_median_second_half_mib": round(
                           statistics.median(rss[len(rss) // 2:]) / 1024, 1)}
    return results


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print the table; write JSON and PNG to --out."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=Path("e2e/bench/out"))
    parser.add_argument("--phase-seconds", type=float, default=20.0)
    parser.add_argument("--soak-seconds", type=float, default=600.0)
    parser.add_argument("--soak-streams", type=int, default=64)
    parser.add_argument("--concurrency", type=lambda t: [int(x) for x in t.split(",")],
                        default=[64, 256])
    parser.add_argument("--request-concurrency", type=lambda t: [int(x) for x in t.split(",")],
                        default=[1, 16])
    parser.add_argument("--token-interval", type=float, default=0.05,
                        help="seconds between streamed tokens (default %(default)s)")
    parser.add_argument("--tokens", type=int, default=40, help="tokens per stream")
    parser.add_argument("--dlp-concurrency", type=lambda t: [int(x) for x in t.split(",")],
                        default=[64, 256],
                        help="streams of the data-protection phase (default %(default)s)")
    parser.add_argument("--dlp-rounds", type=int, default=3,
                        help="rounds of off, audit, redact; the median round is reported "
                             "(default %(default)s)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    workdir = args.out / "gateway-work"
    workdir.mkdir(exist_ok=True)
    was_running = controlplane.running()
    engine = gateway = None
    kube = namespace = None
    dlp: tuple[StandInProcess, GatewayProcess] | None = None
    try:
        print("detectors in process ...", file=sys.stderr, flush=True)
        detectors = detect_bench.measure()
        engine, gateway, bearer, namespace, kube = prepare(workdir, args.token_interval)
        dlp = prepare_dlp(kube, namespace, workdir, args.token_interval)
        results = asyncio.run(measure(args, gateway, engine, bearer, dlp, kube, namespace))
        results["detectors"] = detectors
        audit_lines = sum(1 for _ in (workdir / "audit.jsonl").open())
        results["audit_lines"] = audit_lines
        (args.out / "gateway.json").write_text(json.dumps(results, indent=1))
        plot(results, args.out / "gateway.png")
        print(report(results))
        print(f"audit lines written: {audit_lines}; JSON and PNG in {args.out}/gateway.*")
    finally:
        for process in (gateway, engine, *(dlp or ())):
            if process is not None:
                process.stop()
        if kube is not None and namespace is not None:
            client.CoreV1Api(kube).delete_namespace(namespace)
        if not was_running:
            controlplane.down()
    return 0


if __name__ == "__main__":
    sys.exit(main())
