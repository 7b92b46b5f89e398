"""The `<name>-runtime` ConfigMap: the effective engine configuration, for audit and
debugging (`kubectl get cm <name>-runtime -o yaml`).

It holds what the operator decided: image, command and arguments per pod role, the
names (never the values) of the environment variables, the model source and directory,
the Secret (name and key) of the engine's API key, and the sizing numbers. Arguments
cannot hold a secret: spec.engine.args with a secret flag is refused at admission
(api/secrets.py), and the operator's own `--api-key` is a `$(VAR)` reference.
"""

from typing import Any, Final

import yaml

from ..api import DeepSeekDeployment
from ..catalog import SizingResult
from .engine import PodRole, engine_command, served_model_name
from .names import runtime_config_map
from .pod import engine_image
from .settings import RenderSettings
from .source import ModelSource
from .templating import SAFE_DUMPER, render_manifest
from .workload import workload_kind

RUNTIME_KEY: Final = "runtime.yaml"


def pod_roles(dsd: DeepSeekDeployment, sizing: SizingResult) -> tuple[PodRole, ...]:
    """The engine pod roles of the workload: `single`, or `leader` and `worker`."""
    if workload_kind(dsd, sizing) == "Deployment":
        return ("single",)
    return ("leader", "worker")


def runtime_config(
    dsd: DeepSeekDeployment, sizing: SizingResult, settings: RenderSettings, source: ModelSource
) -> dict[str, Any]:
    """The effective configuration as a plain dict (see the module docstring)."""
    pods: dict[str, Any] = {}
    for role in pod_roles(dsd, sizing):
        engine = engine_command(dsd, sizing, settings, source.model_dir, role)
        pods[role] = {
            "command": engine.command,
            "args": engine.args,
            "env": [str(var["name"]) for var in engine.env],
        }
    status = sizing.to_status().model_dump(exclude_none=True)
    config: dict[str, Any] = {
        "engine": dsd.spec.engine.type,
        "image": engine_image(dsd, settings),
        "workload": workload_kind(dsd, sizing),
        "model": {
            "name": dsd.spec.model.name,
            "servedName": served_model_name(dsd),
            "uri": source.uri,
            "revision": source.revision,
            "directory": source.model_dir,
            "quantization": dsd.spec.model.quantization,
            "weightFormat": sizing.weight_format,
            "maxModelLen": dsd.spec.model.max_model_len,
        },
        "sizing": status,
        "pods": pods,
    }
    key = dsd.spec.engine.api_key_secret
    if key is not None:  # only then: the hash of every other runtime stays as it was
        config["apiKeySecret"] = {"name": key.name, "key": key.key}
    return config


def runtime_config_map_manifest(dsd: DeepSeekDeployment, runtime: dict[str, Any]) -> dict[str, Any]:
    """The `<name>-runtime` ConfigMap of `runtime` (without labels and owner reference)."""
    text = (
        f"# Effective configuration of DeepSeekDeployment {dsd.metadata.namespace}/"
        f"{dsd.metadata.name}, rendered by deepseek-operator.\n"
        + yaml.dump(runtime, Dumper=SAFE_DUMPER, sort_keys=False, allow_unicode=True)
    )
    return render_manifest(
        "configmap.yaml.j2", name=runtime_config_map(dsd), data={RUNTIME_KEY: text}
    )
