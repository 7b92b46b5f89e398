"""The model-cache PersistentVolumeClaim.

Rendered only when the operator owns the cache (`source.creates_model_cache`): not for
spec.storage.existingClaim nor pvc:// weights. Size: spec.storage.size, else the
checkpoint on disk x 1.25 rounded up to whole GiB (`catalog.cache_size`). The claim is
owned by the custom resource only when spec.storage.retainOnDelete is false: by default
the downloaded weights outlive the DeepSeekDeployment.
"""

from typing import Any

from ..api import DeepSeekDeployment
from ..catalog import cache_size
from .settings import RenderSettings
from .source import model_cache_claim
from .templating import render_manifest


def retains_model_cache(dsd: DeepSeekDeployment) -> bool:
    """True when the model cache must survive deleting the custom resource (no owner
    reference): spec.storage.retainOnDelete."""
    return dsd.spec.storage.retain_on_delete


def model_cache_manifest(dsd: DeepSeekDeployment, settings: RenderSettings) -> dict[str, Any]:
    """The model-cache claim (without labels and owner reference: `labels.adopt` adds them).
    Its StorageClass is spec.storage.storageClassName, else the operator's default
    (`RenderSettings.storage_class_name`), else none (the cluster default).

    Raises the catalog's UnknownNameError when the size must come from a model it lacks.
    """
    storage = dsd.spec.storage
    return render_manifest(
        "pvc.yaml.j2",
        name=model_cache_claim(dsd),
        access_mode=storage.access_mode,
        storage_class_name=storage.storage_class_name or settings.storage_class_name,
        size=cache_size(dsd.spec),
    )
