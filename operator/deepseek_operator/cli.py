"""The `deepseek-operator` command: one subcommand per function.

Each subcommand is an `add_<name>_command(commands)` function that adds its parser and
sets `handler` to a function `(args) -> exit code`; `COMMANDS` lists them. To add a
command (render, run), write its two functions and append the adder to `COMMANDS`.

Exit codes: 0 success, 2 invalid input (argparse's usage errors, and any
InvalidSpecError, printed to stderr one line per offending field), 3 refused
(`usage-report`: the day's privacy budget would be exceeded), 1 failed (`usage-report`:
the release failed after its budget was charged).
"""

import argparse
import datetime
import math
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final, get_args

from . import __version__
from .api import EngineType, InvalidSpecError, Quantization, parse_deployment, parse_spec
from .api.crd import crd_yaml
from .catalog import SizingResult, gpu_catalog, model_catalog, size_deployment
from .render import (
    DEFAULT_ENGINE_IMAGES,
    DEFAULT_S3_DOWNLOAD_IMAGE,
    RenderSettings,
    dump_yaml_stream,
    load_documents,
    render,
    with_namespace,
)
from .usage.contributions import Cell
from .usage.limits import (
    MAX_CELLS,
    MAX_EPSILON,
    MAX_REQUESTS,
    MAX_TOKENS,
    MIN_EPSILON,
    MIN_METRIC_EPSILON,
)

Subcommands = argparse._SubParsersAction  # argparse has no public name for it
Handler = Callable[[argparse.Namespace], int]

EXIT_INVALID: Final = 2
EXIT_REFUSED: Final = 3
EXIT_FAILED: Final = 1
DEPLOYMENT_KIND: Final = "DeepSeekDeployment"

# Spec fields the `size` options set, so errors can name the option too.
SIZE_OPTIONS: Final = {
    "spec.model.name": "--model",
    "spec.gpu.type": "--gpu",
    "spec.model.quantization": "--quantization",
    "spec.model.maxModelLen": "--max-model-len",
    "spec.gpu.maxConcurrentSequences": "--concurrency",
    "spec.engine.type": "--engine",
    "spec.gpu.count": "--gpu-count",
    "spec.gpu.perNode": "--gpus-per-node",
    "spec.engine.gpuMemoryUtilization": "--gpu-memory-utilization",
    "spec.model.uri": "--uri",
}


def add_models_command(commands: "Subcommands[argparse.ArgumentParser]") -> None:
    """`models`: the catalog's models and GPUs as tables."""
    parser = commands.add_parser("models", help="list the catalog's models and GPUs")
    parser.set_defaults(handler=run_models)


def run_models(args: argparse.Namespace) -> int:
    """Print the model table, then the GPU table."""
    model_rows = [
        [
            m.name,
            f"{m.params_total_b:g}B",
            f"{m.params_active_b:g}B" if m.params_active_b else "-",
            m.native_dtype,
            f"{m.disk_gb:g}",
            str(m.num_hidden_layers),
            str(m.num_attention_heads),
            m.attention,
            str(m.kv_bytes_per_token),
            str(m.max_position_embeddings),
            m.repo,
        ]
        for m in model_catalog().values()
    ]
    headers = ["MODEL", "PARAMS", "ACTIVE", "DTYPE", "DISK GB", "LAYERS", "HEADS", "ATTENTION"]
    headers += ["KV B/TOKEN", "MAX CONTEXT", "REPOSITORY"]
    print(format_table(headers, model_rows))
    print()
    gpu_rows = [
        [
            g.name,
            str(g.memory_mib),
            f"{g.memory_gib:.1f}",
            g.family,
            g.compute_capability,
            "yes" if g.fp8 else "no",
            g.product,
        ]
        for g in gpu_catalog().values()
    ]
    headers = ["GPU", "MEMORY MiB", "MEMORY GiB", "FAMILY", "COMPUTE", "FP8", "PRODUCT LABEL"]
    print(format_table(headers, gpu_rows))
    return 0


def add_size_command(commands: "Subcommands[argparse.ArgumentParser]") -> None:
    """`size`: GPUs and memory for one replica of a model on a GPU type."""
    parser = commands.add_parser(
        "size",
        help="size one replica: GPUs, tensor/pipeline parallel, memory",
        description="Size one replica as the operator does; defaults are the API's.",
    )
    parser.add_argument("--model", required=True, help="catalog model (see `models`)")
    parser.add_argument("--gpu", default="", help="catalog GPU; empty: any GPU with enough memory")
    parser.add_argument("--quantization", choices=get_args(Quantization))
    parser.add_argument("--max-model-len", type=int, help="tokens per sequence (maxModelLen)")
    parser.add_argument("--concurrency", type=int, help="maxConcurrentSequences")
    parser.add_argument("--engine", choices=get_args(EngineType))
    parser.add_argument("--gpu-count", type=int, help="GPUs per replica; 0: sized")
    parser.add_argument("--gpus-per-node", type=int, help="GPUs per node (gpu.perNode)")
    parser.add_argument("--gpu-memory-utilization", type=float, help="engine memory fraction")
    parser.add_argument("--uri", help="checkpoint URI (needed for int8, awq, gptq)")
    parser.set_defaults(handler=run_size)


def run_size(args: argparse.Namespace) -> int:
    """Build the spec the options describe, size it, print the result as a table."""
    model: dict[str, Any] = {"name": args.model}
    gpu: dict[str, Any] = {"type": args.gpu}
    engine: dict[str, Any] = {}
    for section, key, value in [
        (model, "quantization", args.quantization),
        (model, "maxModelLen", args.max_model_len),
        (model, "uri", args.uri),
        (gpu, "maxConcurrentSequences", args.concurrency),
        (gpu, "count", args.gpu_count),
        (gpu, "perNode", args.gpus_per_node),
        (engine, "type", args.engine),
        (engine, "gpuMemoryUtilization", args.gpu_memory_utilization),
    ]:
        if value is not None:
            section[key] = value
    try:
        spec = parse_spec({"model": model, "gpu": gpu, "engine": engine})
        result = size_deployment(spec)
    except InvalidSpecError as error:
        for issue in error.issues:
            option = SIZE_OPTIONS.get(issue.path)
            where = f"{issue.path} ({option})" if option else issue.path
            print(f"error: {where}: {issue.message}", file=sys.stderr)
        return EXIT_INVALID
    print(format_table(["", ""], sizing_rows(result), header=False))
    return 0


def sizing_rows(result: SizingResult) -> list[list[str]]:
    """The `size` table: one [label, value] row per fact, memory in GiB."""
    gpu = result.gpu_type + (" (reference; any GPU with enough memory)" if result.any_gpu else "")
    rows = [
        ["model", result.model],
        ["weights format", result.weight_format + _weights_note(result)],
        ["engine", result.engine],
        ["gpu", gpu],
        ["gpus per replica", str(result.gpus_per_replica)],
        ["tensor parallel", str(result.tensor_parallel_size)],
        ["pipeline parallel", str(result.pipeline_parallel_size)],
        ["nodes per replica", str(result.nodes_per_replica)],
        ["gpus per pod", str(result.gpus_per_pod)],
        ["weights", f"{result.weights_gib:.1f} GiB"],
        [
            "kv cache",
            f"{result.kv_cache_gib:.1f} GiB ({result.max_concurrent_sequences} sequences x "
            f"{result.max_model_len} tokens x {result.kv_bytes_per_token} B/token)",
        ],
        [
            "overhead",
            f"{result.overhead_gib:.1f} GiB ({result.overhead_per_gpu_gib:.1f} GiB per GPU)",
        ],
        ["weights + kv + overhead", f"{result.total_gib:.1f} GiB"],
        [
            "per gpu",
            f"{result.memory_per_gpu_gib:.1f} GiB needed, {result.usable_gib_per_gpu:.1f} GiB "
            f"usable ({result.gpu_memory_gib:.1f} GiB x {result.gpu_memory_utilization:.2f})",
        ],
        ["gpu memory reserved", _reserved(result)],
        ["min nvidia.com/gpu.memory", f"{result.min_gpu_memory_mib} MiB"],
    ]
    return rows


def _reserved(result: SizingResult) -> str:
    """GPU memory the replica holds: every GPU sized for the most loaded one. It exceeds
    the sum of the parts when each tensor-parallel rank keeps KV cache the others keep
    too (MLA's latent cache, or KV heads fewer than the ranks), so say why."""
    text = (f"{result.gpu_memory_required_gib:.1f} GiB ({result.gpus_per_replica} x "
            f"{result.memory_per_gpu_gib:.1f} GiB)")
    if result.gpu_memory_required_gib > result.total_gib * 1.01:
        text += "; more than the sum above: tensor-parallel ranks hold copies of the KV cache"
    return text


def _weights_note(result: SizingResult) -> str:
    notes = []
    if result.quantization == "none":
        notes.append("the checkpoint's own")
    if result.fp8_weight_only:
        notes.append("weight-only here: no FP8 tensor cores, vLLM uses Marlin kernels")
    if result.requires_fp8_gpu:
        notes.append("SGLang needs a GPU with FP8 tensor cores for this model")
    return f" ({'; '.join(notes)})" if notes else ""


def add_crd_command(commands: "Subcommands[argparse.ArgumentParser]") -> None:
    """`crd`: the CustomResourceDefinition generated from the API models."""
    parser = commands.add_parser("crd", help="print the DeepSeekDeployment CRD (YAML)")
    parser.add_argument("-o", "--output", type=Path, help="write to this file instead of stdout")
    parser.set_defaults(handler=run_crd)


def run_crd(args: argparse.Namespace) -> int:
    """Print the CRD, or write it to --output; exit 2 naming the file if it cannot be
    written."""
    text = crd_yaml()
    if args.output is None:
        sys.stdout.write(text)
        return 0
    try:
        args.output.write_text(text, encoding="utf-8")
    except OSError as error:
        print(f"error: {args.output}: cannot write: {error.strerror or error}", file=sys.stderr)
        return 2
    return 0


def add_render_command(commands: "Subcommands[argparse.ArgumentParser]") -> None:
    """`render`: the objects DeepSeekDeployments become, as one YAML stream."""
    parser = commands.add_parser(
        "render",
        help="print the objects DeepSeekDeployments become (YAML stream, like helm template)",
        description=(
            "Render every DeepSeekDeployment in the files as the operator would, without a "
            "cluster. Owner references need metadata.uid, which objects read from a cluster "
            "have; files usually do not, so their output carries labels only."
        ),
    )
    parser.add_argument(
        "-f",
        "--filename",
        action="append",
        required=True,
        help="YAML file with one or more DeepSeekDeployments ('-': stdin); repeatable; "
        "documents of other kinds (a Namespace, a Secret) are skipped",
    )
    parser.add_argument(
        "-n", "--namespace", help="namespace of objects that give none (default: default)"
    )
    parser.add_argument(
        "--pod-monitor", action="store_true", help="also render PodMonitors (Prometheus Operator)"
    )
    parser.add_argument(
        "--cluster-domain", default="cluster.local", help="cluster DNS domain of the endpoint"
    )
    parser.add_argument(
        "--gateway", action="store_true",
        help="render as an operator run with --gateway (autoscaling queries read the gateway)"
    )
    parser.add_argument(
        "--gateway-service-account", metavar="NAMESPACE/NAME", type=_service_account,
        default="", help="render as an operator run with this --gateway-service-account "
                         "(the gateway's Role for an engine API key Secret)"
    )
    parser.set_defaults(handler=run_render)


def _port(text: str) -> int:
    """argparse type: a TCP port number, 0 to 65535."""
    port = int(text)
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{text} is not a port (0 to 65535)")
    return port


def run_render(args: argparse.Namespace) -> int:
    """Render every DeepSeekDeployment of every file; print the stream only if all of them
    render.

    Documents of other kinds (a Namespace or Secret kept beside the CR) are skipped and
    counted on stderr; a document without `kind` is an error. Errors go to stderr as
    `error: FILE: document N (NAME): FIELD: message`; exit code 2, also when no file holds
    a DeepSeekDeployment.
    """
    settings = RenderSettings(pod_monitor=args.pod_monitor, cluster_domain=args.cluster_domain,
                              gateway=args.gateway,
                              gateway_service_account=args.gateway_service_account)
    objects: list[dict[str, Any]] = []
    skipped: list[str] = []
    failed = False
    for filename in args.filename:
        try:
            text = sys.stdin.read() if filename == "-" else Path(filename).read_text("utf-8")
            documents = load_documents(text)
        except UnicodeDecodeError:
            print(f"error: {filename}: cannot read: not UTF-8 text", file=sys.stderr)
            failed = True
            continue
        except OSError as error:
            print(f"error: {filename}: cannot read: {error.strerror or error}", file=sys.stderr)
            failed = True
            continue
        except InvalidSpecError as error:
            for issue in error.issues:
                print(f"error: {filename}: {issue}", file=sys.stderr)
            failed = True
            continue
        for index, document in enumerate(documents, start=1):
            metadata = document.get("metadata")
            name = metadata.get("name") if isinstance(metadata, dict) else None
            where = f"{filename}: document {index}" + (f" ({name})" if name else "")
            kind = document.get("kind")
            if kind is not None and kind != DEPLOYMENT_KIND:
                skipped.append(f"{filename}: document {index} ({kind}"
                               + (f" {name})" if name else ")"))
                continue
            try:
                objects += render(parse_deployment(with_namespace(document, args.namespace)),
                                  settings)
            except InvalidSpecError as error:
                for issue in error.issues:
                    print(f"error: {where}: {issue}", file=sys.stderr)
                failed = True
    if skipped:
        print(f"skipped {len(skipped)} document(s) of other kinds: {'; '.join(skipped)}",
              file=sys.stderr)
    if failed:
        return EXIT_INVALID
    if not objects:
        print(f"error: {', '.join(args.filename)}: no {DEPLOYMENT_KIND} to render",
              file=sys.stderr)
        return EXIT_INVALID
    sys.stdout.write(dump_yaml_stream(objects))
    return 0


def add_run_command(commands: "Subcommands[argparse.ArgumentParser]") -> None:
    """`run`: the operator process (kopf), all namespaces or the ones given.

    Every flag is a setting of `controller.settings.OperatorSettings` and has an
    environment variable `DEEPSEEK_OPERATOR_<NAME>` too; flags left out keep the
    variable's value or the default (they default to argparse.SUPPRESS so that only the
    flags given reach the settings). The settings model validates every value.
    """
    parser = commands.add_parser(
        "run", help="run the operator (reconcile DeepSeekDeployments)",
        description="Every flag can also be set by an environment variable "
                    "DEEPSEEK_OPERATOR_<FLAG> (upper case, '-' as '_', e.g. "
                    "DEEPSEEK_OPERATOR_CLUSTER_DOMAIN; -n is DEEPSEEK_OPERATOR_NAMESPACES, "
                    "comma-separated); a flag wins over its variable.",
        argument_default=argparse.SUPPRESS)
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument("-n", "--namespace", dest="namespaces", action="append",
                       help="watch this namespace (repeatable)")
    scope.add_argument("-A", "--all-namespaces", action="store_true",
                       help="watch all namespaces (the default)")
    option = parser.add_argument
    option("--peering", metavar="NAME",
           help="kopf peering name: of several replicas, one is active (needs the kopf.dev "
                "peering CRDs); default: standalone")
    option("--priority", type=int,
           help="peering priority (default: start time, so the newest replica is active)")
    option("--liveness", metavar="URL",
           help="liveness endpoint, e.g. http://0.0.0.0:8080/healthz")
    option("--metrics-port", metavar="PORT", help="serve Prometheus metrics on this port (0: off)")
    option("--log-format", choices=["plain", "full", "json"])
    option("--relist-seconds", metavar="S",
           help="list every child kind this often to find objects deleted while a watch "
                "was down (default: 600, at least 10)")
    option("--resync-seconds", metavar="S",
           help="reconcile each DeepSeekDeployment this often without events (default: 600, "
                "at least 10)")
    option("--manage-crd", action="store_true",
           help="apply this operator's DeepSeekDeployment CRD at start (server-side apply; "
                "needs patch on it), so an upgrade serves the new fields")
    option("--download-poll-seconds", metavar="S",
           help="read a running download's progress (its pod's log) this often; each new "
                "figure is one status write (default: 30)")
    option("--autoscaler-tick-seconds", metavar="S",
           help="how often the operator's autoscaler looks at each deployment; it acts "
                "every spec.autoscaling.intervalSeconds (default: 5)")
    option("--gateway", action="store_true",
           help="the gateway (deepseek-gateway) fronts every DeepSeekDeployment: the default "
                "autoscaling query reads its request counter and queue, so minReplicas 0 "
                "works without a query of one's own")
    option("--gateway-url", metavar="URL",
           help="base URL of the gateway's Service (implies --gateway): each deployment's "
                "status.endpoint is URL/v1")
    option("--gateway-service-account", metavar="NAMESPACE/NAME",
           help="the gateway's ServiceAccount: a deployment with spec.engine.apiKeySecret "
                "gets a Role letting it get that one Secret (default: none rendered)")
    option("--scraper-namespace-selector", metavar="K=V,...",
           help="labels of the namespaces whose metrics scraper the engine NetworkPolicy "
                "admits (default: any namespace)")
    option("--scraper-pod-selector", metavar="K=V,...",
           help="labels of the metrics scraper's pods the engine NetworkPolicy admits "
                "(default: app.kubernetes.io/name=prometheus)")
    option("--vllm-image", metavar="IMAGE",
           help=f"vLLM image when spec.engine.image is empty (default: "
                f"{DEFAULT_ENGINE_IMAGES['vllm']})")
    option("--sglang-image", metavar="IMAGE",
           help=f"SGLang image when spec.engine.image is empty (default: "
                f"{DEFAULT_ENGINE_IMAGES['sglang']})")
    option("--hf-download-image", metavar="IMAGE",
           help="image of hf:// downloads (default: the engine's image)")
    option("--s3-download-image", metavar="IMAGE",
           help=f"image of s3:// downloads (default: {DEFAULT_S3_DOWNLOAD_IMAGE})")
    option("--registry-prefix", metavar="REGISTRY[/PATH]",
           help="mirror put in front of the default images, e.g. mirror.example.com/dockerhub "
                "(images given by flag or spec are used as given)")
    option("--cluster-domain", metavar="DOMAIN",
           help="cluster DNS domain, for Service endpoints (default: cluster.local)")
    option("--run-as-user", metavar="UID", help="UID of engine and download pods (default: 1000)")
    option("--run-as-group", metavar="GID",
           help="GID (and download fsGroup) of engine and download pods (default: 1000)")
    option("--storage-class", metavar="NAME",
           help="StorageClass of model caches whose spec gives none (default: the "
                "cluster's default class)")
    option("-v", "--verbose", action="store_true", help="debug logging")
    parser.set_defaults(handler=run_run)


def _service_account(text: str) -> str:
    """argparse type: NAMESPACE/NAME of a ServiceAccount (as RenderSettings checks it)."""
    try:
        RenderSettings(gateway_service_account=text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not NAMESPACE/NAME of a ServiceAccount: {text!r}") from None
    return text


def _positive_seconds(text: str) -> float:
    """argparse type: a number of seconds > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number of seconds > 0, got {text!r}")
    return value


def run_run(args: argparse.Namespace) -> int:
    """Run the operator until interrupted; exit code 2 when a setting is invalid (one line
    per bad setting on stderr, naming its flag and environment variable)."""
    from deepseek_operator.controller.run import run_operator
    from deepseek_operator.controller.settings import (
        SettingsError,
        load,
        settings_given,
        unknown_variables,
    )

    for name in unknown_variables(os.environ):
        print(f"warning: {name} is not a setting of the operator and is ignored "
              "(`deepseek-operator run --help` lists the settings)", file=sys.stderr)
    try:
        settings = load(settings_given(vars(args)))
    except SettingsError as error:
        for problem in error.problems:
            print(f"error: {problem}", file=sys.stderr)
        return EXIT_INVALID
    run_operator(settings)
    return 0


def add_gateway_command(commands: "Subcommands[argparse.ArgumentParser]") -> None:
    """`gateway`: the OpenAI-compatible gateway in front of every DeepSeekDeployment."""
    parser = commands.add_parser(
        "gateway", help="run the gateway: authorized, audited OpenAI API for every model",
        description="Authenticate (TokenReview), authorize model:query "
                    "(SubjectAccessReview), route by `model`, queue while no replica is "
                    "ready, audit every request; /healthz and /readyz on the same port, "
                    "/metrics too unless --metrics-listen-address moves it. "
                    "docs/gateway.md has the details.")
    parser.add_argument("--listen-address", type=_host_port, default="0.0.0.0:8080",
                        help="HOST:PORT to serve on (default: %(default)s; port 0: any free "
                             "port, printed on stderr)")
    parser.add_argument("--metrics-listen-address", type=_host_port, default=None,
                        help="HOST:PORT of a separate listener for /metrics (and /healthz), "
                             "which then leaves the API port: its series name every "
                             "deployment (default: /metrics on --listen-address)")
    parser.add_argument("--upstream-template", default="http://{name}.{namespace}.svc:{port}",
                        help="engine base URL per DeepSeekDeployment; {name}, {namespace} "
                             "and {port} (spec.service.port) are filled in "
                             "(default: %(default)s)")
    parser.add_argument("-n", "--namespace", default="",
                        help="serve the DeepSeekDeployments of this namespace only "
                             "(default: all namespaces)")
    parser.add_argument("--audiences", default="",
                        help="comma-separated token audiences to accept (default: the "
                             "apiserver's own)")
    parser.add_argument("--audit-file", type=Path, default=None,
                        help="also append audit lines to this file (default: stdout only)")
    parser.add_argument("--audit-max-bytes", type=_positive_int, default=100 << 20,
                        help="rotate the audit file past this size (default: %(default)s)")
    parser.add_argument("--audit-backups", type=_non_negative_int, default=5,
                        help="rotated audit files kept (default: %(default)s)")
    parser.add_argument("--audit-digest-key-file", type=_digest_key, default=b"",
                        metavar="PATH",
                        help="file holding the key of each audit line's request_hmac (at "
                             "least 16 bytes; mount it from a Secret, the same for every "
                             "replica); default: a random key per process")
    parser.add_argument("--audit-fail-open", action="store_true",
                        help="serve a request even when its audit line cannot be written "
                             "(default: refuse it)")
    parser.add_argument("--queue-timeout-seconds", type=_positive_seconds, default=900.0,
                        help="how long a request waits for a ready replica before 503 "
                             "(default: %(default)s, sized for a model load)")
    parser.add_argument("--max-queued", type=_non_negative_int, default=64,
                        help="requests waiting per deployment; more get 503 "
                             "(default: %(default)s)")
    parser.add_argument("--per-replica-concurrency", type=_non_negative_int, default=0,
                        help="requests one ready replica takes at once; more wait at the "
                             "gateway (default 0: the deployment's "
                             "spec.gpu.maxConcurrentSequences)")
    parser.add_argument("--max-body-bytes", type=_positive_int, default=1 << 20,
                        help="largest request body; larger gets 413 (default: %(default)s)")
    parser.add_argument("--body-timeout-seconds", type=_positive_seconds, default=30.0,
                        help="time to receive a request body; slower gets 408 "
                             "(default: %(default)s)")
    parser.add_argument("--auth-cache-seconds", type=_non_negative_seconds, default=10.0,
                        help="how long TokenReview and SubjectAccessReview answers are "
                             "reused (default: %(default)s; 0: never)")
    parser.add_argument("--auth-cache-size", type=_non_negative_int, default=10000,
                        help="answers cached, per kind (default: %(default)s)")
    parser.add_argument("--no-data-protection", action="store_true",
                        help="inspect nothing: no detectors, scores or redaction, whatever "
                             "the policies say (audit lines show data_protection null; "
                             "for benchmarks and emergencies)")
    parser.set_defaults(handler=run_gateway_command)


def _digest_key(path: str) -> bytes:
    """argparse type: the key in file `path` (surrounding whitespace removed), at least 16
    bytes. The error names the file, never its content."""
    try:
        key = Path(path).read_bytes().strip()
    except OSError as error:
        raise argparse.ArgumentTypeError(f"cannot read {path}: {error.strerror}") from None
    if len(key) < 16:
        raise argparse.ArgumentTypeError(f"{path} holds {len(key)} bytes; the key needs at "
                                         "least 16")
    return key


def _host_port(text: str) -> tuple[str, int]:
    """argparse type: HOST:PORT (IPv6 hosts in brackets)."""
    host, sep, port = text.rpartition(":")
    if not sep or not host:
        raise argparse.ArgumentTypeError(f"{text!r} is not HOST:PORT (e.g. 0.0.0.0:8080)")
    return host.strip("[]"), _port(port)


def _positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text!r}")
    return value


def _non_negative_int(text: str) -> int:
    """argparse type: an integer >= 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text!r}")
    return value


def _non_negative_seconds(text: str) -> float:
    """argparse type: a number of seconds >= 0."""
    if text.strip() in ("0", "0.0"):
        return 0.0
    return _positive_seconds(text)


def run_gateway_command(args: argparse.Namespace) -> int:
    """Run the gateway until interrupted."""
    from deepseek_operator.gateway.run import run_gateway
    from deepseek_operator.gateway.server import GatewayOptions

    host, port = args.listen_address
    return run_gateway(GatewayOptions(
        host=host, port=port, upstream_template=args.upstream_template,
        namespace=args.namespace,
        audiences=tuple(a.strip() for a in args.audiences.split(",") if a.strip()),
        audit_file=args.audit_file, audit_max_bytes=args.audit_max_bytes,
        audit_backups=args.audit_backups, audit_fail_open=args.audit_fail_open,
        audit_digest_key=args.audit_digest_key_file,
        queue_timeout_seconds=args.queue_timeout_seconds, max_queued=args.max_queued,
        per_replica_concurrency=args.per_replica_concurrency,
        max_body_bytes=args.max_body_bytes, body_timeout_seconds=args.body_timeout_seconds,
        auth_cache_seconds=args.auth_cache_seconds, auth_cache_size=args.auth_cache_size,
        data_protection=not args.no_data_protection,
        metrics_address=args.metrics_listen_address))


def add_usage_report_command(commands: "Subcommands[argparse.ArgumentParser]") -> None:
    """`usage-report`: differentially private usage per day, deployment and role."""
    parser = commands.add_parser(
        "usage-report",
        help="publish per-day request and token counts per deployment and role, with "
             "differential privacy",
        description="Read the gateway's audit trail and publish, per UTC day, deployment "
                    "and role, the allowed requests and their tokens, each with discrete "
                    "Laplace noise (OpenDP). The unit of privacy is one user's whole day; "
                    "each release spends --epsilon of each day's --daily-budget, recorded "
                    "in --ledger. docs/usage-report.md has the guarantee and its limits.")
    parser.add_argument("--audit-file", type=Path, action="append", required=True,
                        help="the gateway's --audit-file, read with its rotations FILE.1 ... "
                             "(repeatable: one per gateway replica)")
    parser.add_argument("--day", type=_utc_day, action="append", default=[],
                        help="UTC day to release, YYYY-MM-DD (repeatable; default: "
                             "yesterday)")
    parser.add_argument("--key", type=_usage_key, action="append", default=None,
                        metavar="NAMESPACE/DEPLOYMENT/ROLE",
                        help="a cell to release, ROLE '-' for none (repeatable); default: "
                             "every cell in the trail, which the noise does not protect")
    parser.add_argument("--epsilon", type=_release_epsilon, default=MAX_EPSILON,
                        help=f"ε this release spends per day, from {MIN_EPSILON:g} to "
                             f"{MAX_EPSILON} (default: %(default)s)")
    parser.add_argument("--daily-budget", type=_positive_number, default=1.0,
                        help="ε all releases of one day may spend (default: %(default)s)")
    parser.add_argument("--requests-share", type=_share, default=0.5,
                        help="part of --epsilon for request counts, the rest for tokens; "
                             f"each part at least {MIN_METRIC_EPSILON:g} "
                             "(default: %(default)s)")
    parser.add_argument("--max-cells-per-user", type=_int_up_to(MAX_CELLS), default=2,
                        help="deployment/role cells one user counts in per day; the ones "
                             f"with the most requests are kept, 1 to {MAX_CELLS} "
                             "(default: %(default)s)")
    parser.add_argument("--max-requests", type=_int_up_to(MAX_REQUESTS), default=50,
                        help="requests one user counts per cell and day, more are clamped, "
                             f"1 to {MAX_REQUESTS} (default: %(default)s)")
    parser.add_argument("--max-tokens", type=_int_up_to(MAX_TOKENS), default=50_000,
                        help="tokens one user counts per cell and day, more are clamped, "
                             f"1 to {MAX_TOKENS} (default: %(default)s)")
    parser.add_argument("--ledger", type=Path, default=None,
                        help="the budget ledger (JSON; default: the first --audit-file with "
                             "suffix .usage-ledger.json)")
    parser.add_argument("-o", "--output", choices=["table", "json"], default="table")
    parser.set_defaults(handler=run_usage_report)


def _utc_day(text: str) -> datetime.date:
    """argparse type: a day as YYYY-MM-DD."""
    try:
        return datetime.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a day YYYY-MM-DD: {text!r}") from None


def _usage_key(text: str) -> Cell:
    """argparse type: NAMESPACE/DEPLOYMENT/ROLE (ROLE '-': none)."""
    parts = text.split("/")
    if len(parts) != 3 or not all(parts):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not NAMESPACE/DEPLOYMENT/ROLE (e.g. ai/r1/user, ai/r1/-)")
    return Cell(parts[0], parts[1], None if parts[2] == "-" else parts[2])


def _positive_number(text: str) -> float:
    """argparse type: a finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {text!r}")
    return value


def _int_up_to(most: int) -> Callable[[str], int]:
    """argparse type: an integer from 1 to `most` (a per-user bound of usage-report,
    capped so that OpenDP's integers cannot overflow: usage/limits.py)."""

    def parse(text: str) -> int:
        value = _positive_int(text)
        if value > most:
            raise argparse.ArgumentTypeError(f"must be >= 1 and <= {most}, got {text!r}")
        return value

    return parse


def _release_epsilon(text: str) -> float:
    """argparse type: ε of one release, MIN_EPSILON <= ε <= MAX_EPSILON."""
    value = _positive_number(text)
    if value < MIN_EPSILON:
        raise argparse.ArgumentTypeError(
            f"{text} is below {MIN_EPSILON:g}, the least one release may spend (below it "
            "the noise drowns every count)")
    if value > MAX_EPSILON:
        raise argparse.ArgumentTypeError(
            f"{text} is above {MAX_EPSILON}, the most one release may spend; ask for at "
            f"most --epsilon {MAX_EPSILON} (and spread larger needs over days)")
    return value


def _share(text: str) -> float:
    """argparse type: a fraction strictly between 0 and 1."""
    value = _positive_number(text)
    if value >= 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text!r}")
    return value


def run_usage_report(args: argparse.Namespace) -> int:
    """Release, print the table or JSON on stdout and the input summary on stderr."""
    from deepseek_operator.usage.contributions import Bounds
    from deepseek_operator.usage.ledger import BudgetExceededError, LedgerError
    from deepseek_operator.usage.report import to_json, to_table
    from deepseek_operator.usage.run import (
        ReleaseFailedError,
        UsageError,
        UsageOptions,
        usage_report,
    )

    now = datetime.datetime.now(datetime.UTC)
    days = tuple(args.day) or (now.date() - datetime.timedelta(days=1),)
    ledger = args.ledger or Path(f"{args.audit_file[0]}.usage-ledger.json")
    options = UsageOptions(
        audit_files=tuple(args.audit_file), days=days,
        keys=None if args.key is None else tuple(args.key),
        bounds=Bounds(max_cells=args.max_cells_per_user, max_requests=args.max_requests,
                      max_tokens=args.max_tokens),
        epsilon=args.epsilon, requests_share=args.requests_share,
        daily_budget=args.daily_budget, ledger=ledger)
    try:
        release, diagnostics = usage_report(options, now)
    except BudgetExceededError as error:
        print(f"error: {error} (--daily-budget; ledger {ledger} unchanged)", file=sys.stderr)
        return EXIT_REFUSED
    except (UsageError, LedgerError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_INVALID
    except ReleaseFailedError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_FAILED
    for line in diagnostics.lines():
        print(line, file=sys.stderr)
    print(to_json(release) if args.output == "json" else to_table(release))
    return 0


def add_status_command(commands: "Subcommands[argparse.ArgumentParser]") -> None:
    """`status NAME`: one DeepSeekDeployment's pipeline at a glance (pipeline_view)."""
    parser = commands.add_parser(
        "status", help="show one DeepSeekDeployment's pipeline: claim, download, workload, "
        "scaling, endpoint")
    parser.add_argument("name", help="the DeepSeekDeployment")
    parser.add_argument("-n", "--namespace", default="default", help="its namespace")
    parser.set_defaults(handler=run_status)


def run_status(args: argparse.Namespace) -> int:
    """Print the pipeline view; exit 1 when the object does not exist or cannot be read."""
    from kubernetes.client import ApiException
    from kubernetes.config import ConfigException

    from .pipeline_view import fetch, pipeline_text

    try:
        obj = fetch(args.namespace, args.name)
    except (ApiException, ConfigException) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    if obj is None:
        print(f"error: deepseekdeployment {args.namespace}/{args.name} not found",
              file=sys.stderr)
        return 1
    print(pipeline_text(obj))
    return 0


COMMANDS: Final[tuple[Callable[["Subcommands[argparse.ArgumentParser]"], None], ...]] = (
    add_models_command,
    add_size_command,
    add_crd_command,
    add_render_command,
    add_run_command,
    add_gateway_command,
    add_usage_report_command,
    add_status_command,
)


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every command of COMMANDS."""
    parser = argparse.ArgumentParser(
        prog="deepseek-operator",
        description="Serve the DeepSeek-R1 model family on Kubernetes GPU clusters.",
    )
    parser.add_argument("--version", action="version", version=__version__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add_command in COMMANDS:
        add_command(commands)
    for command_parser in commands.choices.values():
        command_parser.set_defaults(command_parser=command_parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line `argv` (default: sys.argv[1:]); returns the exit code.

    Usage errors exit through argparse (SystemExit with code 2).
    """
    args, unknown = build_parser().parse_known_args(argv)
    if unknown:  # report it with the command's own usage, not the top-level one
        args.command_parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    handler: Handler = args.handler
    try:
        return handler(args)
    except InvalidSpecError as error:
        for issue in error.issues:
            print(f"error: {issue}", file=sys.stderr)
        return EXIT_INVALID


def format_table(headers: Sequence[str], rows: Sequence[Sequence[str]], header: bool = True) -> str:
    """Left-aligned columns separated by two spaces, like kubectl's tables."""
    lines = [list(headers), *rows] if header else [list(row) for row in rows]
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in lines
    )


if __name__ == "__main__":
    sys.exit(main())
