"""Where a DeepSeekDeployment's weights come from, and where pods find them.

The model cache is one PersistentVolumeClaim mounted at `MODEL_CACHE_MOUNT`: read-write by
the download Job, read-only by the serving pods. Each source gets its own directory, so
one existing claim can hold several models:

- `hf://ORG/REPO` (revision R)  -> /models/hf/ORG/REPO, downloaded with `hf download`;
- `s3://BUCKET/PREFIX`          -> /models/s3/BUCKET/PREFIX, downloaded with `aws s3 sync`;
- `pvc://CLAIM/PATH`            -> /models/PATH on CLAIM itself: nothing is downloaded.

A completed download leaves `MARKER_FILE` in the model directory holding the source id
(`hf://ORG/REPO@R`, or the s3:// URI): the Job skips a download whose marker matches, and
the serving pods wait for it.
"""

from dataclasses import dataclass
from typing import Final, Literal

from ..api import DeepSeekDeployment, FieldIssue, InvalidSpecError
from ..catalog import model_uri

MODEL_CACHE_MOUNT: Final = "/models"
MARKER_FILE: Final = ".deepseek-operator-complete"
DEFAULT_REVISION: Final = "main"

Scheme = Literal["hf", "s3", "pvc"]


@dataclass(frozen=True)
class ModelSource:
    """The weights of one DeepSeekDeployment.

    `uri`: the effective URI (spec.model.uri, or hf:// of the catalog repository).
    `location`: what follows `scheme://` (ORG/REPO, BUCKET/PREFIX, CLAIM/PATH).
    `model_dir`: absolute path of the weights inside the pods. `source_id`: what the
    completion marker holds. `claim`: for pvc:// the claim holding the weights, else "".
    """

    scheme: Scheme
    uri: str
    location: str
    revision: str
    model_dir: str
    source_id: str
    claim: str


def model_source(dsd: DeepSeekDeployment) -> ModelSource:
    """Resolve the spec's weights (see the module docstring).

    Raises InvalidSpecError naming spec.model.uri for a path with `.` or `..` segments,
    spec.model.revision when a revision other than main is given for s3:// or pvc://
    (only hf:// repositories have revisions), and the catalog's UnknownNameError
    (spec.model.name) when uri is empty and the model is not in the catalog.
    """
    uri = model_uri(dsd.spec.model)
    scheme, _, location = uri.partition("://")
    segments = [part for part in location.split("/") if part]
    if any(part in (".", "..") for part in segments):
        raise InvalidSpecError(
            [FieldIssue("spec.model.uri", f"path segments '.' and '..' are not allowed: {uri}")]
        )
    revision = dsd.spec.model.revision
    if scheme != "hf" and revision != DEFAULT_REVISION:
        raise InvalidSpecError(
            [
                FieldIssue(
                    "spec.model.revision",
                    f"revision {revision!r} applies to hf:// repositories only; {scheme}:// "
                    f"weights have none: remove it (or set {DEFAULT_REVISION})",
                )
            ]
        )
    if scheme == "hf":
        return ModelSource(
            "hf",
            uri,
            location,
            revision,
            "/".join([MODEL_CACHE_MOUNT, "hf", *segments]),
            f"{uri}@{revision}",
            "",
        )
    if scheme == "s3":
        return ModelSource(
            "s3", uri, location, revision, "/".join([MODEL_CACHE_MOUNT, "s3", *segments]), uri, ""
        )
    if scheme == "pvc":
        return ModelSource(
            "pvc",
            uri,
            location,
            revision,
            "/".join([MODEL_CACHE_MOUNT, *segments[1:]]),
            uri,
            segments[0],
        )
    raise InvalidSpecError([FieldIssue("spec.model.uri", f"unsupported scheme in {uri!r}")])


def needs_download(dsd: DeepSeekDeployment) -> bool:
    """True when a download Job must fill the model cache: hf:// and s3:// sources; False
    for pvc://, whose weights are already on a volume.

    Raises what `model_source` raises.
    """
    return model_source(dsd).scheme != "pvc"


def creates_model_cache(dsd: DeepSeekDeployment) -> bool:
    """True when the operator renders the model-cache claim `<name>-model-cache`: not when
    spec.storage.existingClaim names one to use, nor for pvc:// weights.

    Raises what `model_source` raises.
    """
    return not dsd.spec.storage.existing_claim and needs_download(dsd)


def model_cache_claim(dsd: DeepSeekDeployment) -> str:
    """Name of the claim the pods mount at /models: the pvc:// claim, else
    spec.storage.existingClaim, else `<name>-model-cache` (which the operator creates).

    Raises what `model_source` raises.
    """
    source = model_source(dsd)
    if source.claim:
        return source.claim
    return dsd.spec.storage.existing_claim or f"{dsd.metadata.name}-model-cache"
