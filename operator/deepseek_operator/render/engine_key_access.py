"""The gateway's read access to a deployment's engine API key: a Role and RoleBinding
`<name>.engine-api-key` granting the gateway's ServiceAccount `get` on the one Secret that
spec.engine.apiKeySecret names (`resourceNames`), in the deployment's namespace.

So the gateway, the component that faces callers, needs no access to Secrets of its own:
it can read exactly the API keys of the deployments that have one. Kubernetes lets a
subject grant only permissions it holds (RBAC escalation prevention), so the operator's
ClusterRole holds `get` on secrets to render this Role; the operator never reads a Secret.

Rendered only when the operator knows the gateway's ServiceAccount
(`RenderSettings.gateway_service_account`, the chart sets it) and the deployment has an
API key; otherwise none, and a Role rendered before is deleted with the other children
the spec no longer asks for.
"""

from typing import Any

from ..api import DeepSeekDeployment
from .names import engine_key_access
from .settings import RenderSettings
from .templating import render_manifest


def engine_key_access_manifests(dsd: DeepSeekDeployment,
                                settings: RenderSettings) -> list[dict[str, Any]]:
    """[Role, RoleBinding] `<name>.engine-api-key` (without labels and owner references),
    or [] (module docstring)."""
    key = dsd.spec.engine.api_key_secret
    if key is None or not settings.gateway_service_account:
        return []
    namespace, account = settings.gateway_service_account.split("/", 1)
    name = engine_key_access(dsd)
    rules = [{"apiGroups": [""], "resources": ["secrets"], "resourceNames": [key.name],
              "verbs": ["get"]}]
    subjects = [{"kind": "ServiceAccount", "name": account, "namespace": namespace}]
    return [render_manifest("role.yaml.j2", name=name, rules=rules),
            render_manifest("rolebinding.yaml.j2", name=name, subjects=subjects)]
