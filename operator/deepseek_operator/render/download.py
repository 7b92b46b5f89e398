"""The download Job: fills the model cache once from hf:// or s3:// and writes the
completion marker (see `source`) that the serving pods wait for.

- hf://: `hf download ORG/REPO --revision R --local-dir DIR` (huggingface_hub's CLI,
  `huggingface-cli` on older images) in the engine image, or `hf_download_image`.
- s3://: `aws s3 sync` in `s3_download_image`.
- Credentials: the keys of spec.model.credentialsSecret become environment variables
  through `envFrom` (HF_TOKEN; AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL):
  the Secret is referenced, never read or copied.
- A marker holding the expected source id makes a rerun (new revision, new operator
  version) skip what is already there; a download that fails is retried BACKOFF_LIMIT
  times. ttlSecondsAfterFinished is not set: the completed Job is the controller's record
  that the cache is complete.

A Job's pod template is immutable, so the Job's name ends with a hash of its pod template:
any change (another revision, image or script) makes a new Job rather than an update the
apiserver would refuse; the old one is no longer rendered, so the controller deletes it.
The Job tolerates the nvidia.com/gpu taint so it can run on GPU-only clusters, without
requiring a GPU node. It runs as `RenderSettings.run_as_user` with that fsGroup, so the
claim must be writable by it: volumes without ownership management (some NFS exports) need
their root directory prepared for that UID/GID.
"""

import hashlib
import json
import math
from typing import Any, Final

from ..api import DeepSeekDeployment, FieldIssue, InvalidSpecError
from ..catalog import checkpoint_bytes
from .engine import k8s_literal
from .labels import labels_for
from .scheduling import GPU_TOLERATION
from .settings import RenderSettings
from .source import MARKER_FILE, MODEL_CACHE_MOUNT, ModelSource, model_cache_claim, model_source
from .templating import render_manifest, render_text

BACKOFF_LIMIT: Final = 4
# Exit code of the download scripts for errors that retrying cannot fix (not found,
# unauthorized); the Job's podFailurePolicy fails the Job on it at once.
PERMANENT_FAILURE_EXIT_CODE: Final = 3
JOB_HOME: Final = "/tmp"
# Where the download container writes why it failed (scripts/failure.sh.j2); the kubelet
# copies it into the pod's state.terminated.message, which ModelCached shows.
TERMINATION_MESSAGE_PATH: Final = "/dev/termination-log"
# The download script's progress lines: this prefix, a space, then JSON
# {"bytes", "expectedBytes", "changedAt", "time"} (controller/progress.py reads them).
PROGRESS_PREFIX: Final = "deepseek-operator-progress"
PROGRESS_SECONDS: Final = 10
# Added to the transfer time at the minimum rate: scheduling, image pull, start-up.
DEADLINE_STARTUP_SECONDS: Final = 3600
MIB: Final = 2**20
# The longest deadline, seconds (30 days): the CRD's maximum of activeDeadlineSeconds, so
# a derived deadline is bounded the same way as a given one.
MAX_DEADLINE_SECONDS: Final = 2592000


def deadline_seconds(dsd: DeepSeekDeployment) -> int:
    """activeDeadlineSeconds of the download Job, seconds: spec.download.activeDeadlineSeconds
    when set, else ceil(checkpoint bytes / (spec.download.minMiBPerSecond x 2^20 bytes/s))
    + DEADLINE_STARTUP_SECONDS. The checkpoint size is the catalog's (`checkpoint_bytes`;
    0 for a model it cannot size, which leaves only the start-up hour).

    Raises InvalidSpecError naming spec.download.minMiBPerSecond when the derived deadline
    is above MAX_DEADLINE_SECONDS (a rate too low to mean anything, e.g. 1e-300, would
    otherwise overflow the Job's field), and the catalog's UnknownNameError as
    `checkpoint_bytes` does.
    """
    download = dsd.spec.download
    if download.active_deadline_seconds is not None:
        return download.active_deadline_seconds
    rate = download.min_mib_per_second * MIB
    seconds = checkpoint_bytes(dsd.spec) / rate + DEADLINE_STARTUP_SECONDS
    if not seconds <= MAX_DEADLINE_SECONDS:  # also inf
        raise InvalidSpecError([FieldIssue(
            "spec.download.minMiBPerSecond",
            f"{download.min_mib_per_second:g} MiB/s gives the download a deadline above 30 "
            f"days ({MAX_DEADLINE_SECONDS} s); raise it, or set "
            "spec.download.activeDeadlineSeconds")])
    return math.ceil(seconds)


def download_image(dsd: DeepSeekDeployment, settings: RenderSettings, source: ModelSource) -> str:
    """Image of the download container for `source` (see the module docstring)."""
    if source.scheme == "s3":
        return settings.s3_download_image
    return (
        settings.hf_download_image
        or dsd.spec.engine.image
        or settings.engine_image(dsd.spec.engine.type)
    )


def download_env(source: ModelSource) -> list[dict[str, str]]:
    """Environment of the download script, sorted by name; values the kubelet keeps literal."""
    env = {
        "HOME": JOB_HOME,
        "MARKER_FILE": MARKER_FILE,
        "MODEL_DIR": source.model_dir,
        "MODEL_SOURCE_ID": source.source_id,
        "TERMINATION_LOG": TERMINATION_MESSAGE_PATH,
    }
    if source.scheme == "hf":
        # The hf CLI otherwise asks pypi.org for a newer version and the Hub for "skills"
        # on every start (huggingface_hub 2.x, HF_HUB_DISABLE_UPDATE_CHECK), and sends
        # telemetry: calls a download pod has no business making.
        env |= {"HF_REPO": source.location, "HF_REVISION": source.revision,
                "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_DISABLE_UPDATE_CHECK": "1"}
    else:
        env["S3_URI"] = source.uri
    return [{"name": name, "value": k8s_literal(value)} for name, value in sorted(env.items())]


def download_script(scheme: str) -> str:
    """The shell script of the download container for `scheme` (hf or s3)."""
    return render_text(f"scripts/download-{scheme}.sh.j2",
                       permanent_failure_exit_code=PERMANENT_FAILURE_EXIT_CODE,
                       prefix=PROGRESS_PREFIX, interval_seconds=PROGRESS_SECONDS)


def download_pod_template(dsd: DeepSeekDeployment, settings: RenderSettings) -> dict[str, Any]:
    """The Job's pod template. Raises ValueError for a pvc:// source (nothing to download)
    and InvalidSpecError as `source.model_source` does."""
    source = model_source(dsd)
    if source.scheme == "pvc":
        raise ValueError(f"{source.uri}: pvc:// weights are not downloaded")
    return render_manifest(
        "download-pod.yaml.j2",
        labels=labels_for(dsd, "download"),
        uid=settings.run_as_user,
        gid=settings.run_as_group,
        tolerations=[dict(GPU_TOLERATION)],
        image=download_image(dsd, settings, source),
        script=download_script(source.scheme),
        env=download_env(source),
        credentials_secret=dsd.spec.model.credentials_secret,
        cache_mount=MODEL_CACHE_MOUNT,
        claim=model_cache_claim(dsd),
        termination_message_path=TERMINATION_MESSAGE_PATH,
    )


def download_job(dsd: DeepSeekDeployment, settings: RenderSettings) -> str:
    """Name of the download Job: `<name>-download-<first 8 hex of SHA-256 of its pod
    template>` (see the module docstring). Raises as `download_pod_template` does."""
    return _job_name(dsd, download_pod_template(dsd, settings))


def download_job_manifest(dsd: DeepSeekDeployment, settings: RenderSettings) -> dict[str, Any]:
    """The download Job (without labels and owner reference: `labels.adopt` adds them)."""
    template = download_pod_template(dsd, settings)
    return render_manifest(
        "download-job.yaml.j2",
        name=_job_name(dsd, template),
        backoff_limit=BACKOFF_LIMIT,
        active_deadline_seconds=deadline_seconds(dsd),
        permanent_failure_exit_code=PERMANENT_FAILURE_EXIT_CODE,
        pod_template=template,
    )


def _job_name(dsd: DeepSeekDeployment, template: dict[str, Any]) -> str:
    canonical = json.dumps(template, sort_keys=True, separators=(",", ":"))
    return f"{dsd.metadata.name}-download-{hashlib.sha256(canonical.encode()).hexdigest()[:8]}"
