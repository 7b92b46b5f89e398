"""Pure rendering of a DeepSeekDeployment into the Kubernetes objects it needs.

Contract (the controller and the CLI rely on it):

- `render(dsd, settings) -> list[dict]`: the desired children, in apply order
  (ServiceAccount, ConfigMaps `<name>-rbac`, `<name>-runtime` and `<name>-gateway-policy`,
  Roles, RoleBindings, NetworkPolicy `<name>-engine`, model-cache PVC, download Job,
  Deployment or LeaderWorkerSet, Service, HorizontalPodAutoscaler or ScaledObject,
  PodMonitor). Pure: no I/O, no global configuration (settings are passed in),
  deterministic (the same input gives the same bytes through
  `yaml.safe_dump(sort_keys=False)`). Raises `api.InvalidSpecError` naming the offending
  field (sizing failures included), nothing else for a spec the API accepts.
- Templates: jinja2 with StrictUndefined, package data under `templates/`; each renders
  YAML text that `yaml.safe_load` reads, then `labels.adopt` stamps labels, namespace and
  owner reference. Values enter templates only through the `tojson` filter, so no user
  string can inject YAML.
- Labels on every object and pod template: `app.kubernetes.io/name=deepseek-deployment`,
  `app.kubernetes.io/instance=<name>`, `app.kubernetes.io/component=<model-cache|download|
  server|server-worker|service|autoscaler|rbac|runtime|monitoring|network-policy|
  gateway-policy>`,
  `app.kubernetes.io/managed-by=deepseek-operator`, `app.kubernetes.io/part-of=
  deepseek-operator`, `deepseek-operator.io/deployment=<name>`. `children_selector(name)`
  selects all children, `pod_selector(name)` the serving pods (status.selector).
- Owner reference (controller, blockOwnerDeletion) to the custom resource on every object
  when metadata.uid is known, except the model-cache PVC when spec.storage.retainOnDelete
  is true. Everything lives in the custom resource's namespace.
- Names: `names.*`: `workload`, `service`, `autoscaler`, `service_account`,
  `pod_monitor` (all `<name>`), `model_cache_claim` (`<name>-model-cache`, or the existing
  or pvc:// claim), `download_job(dsd, settings)` (`<name>-download-<hash of its pod
  template>`: Job templates are immutable), `rbac_config_map`, `runtime_config_map`,
  `role(dsd, role)` (`<name>-rbac`, `<name>-runtime`, `<name>-<role>`),
  `gateway_policy_config_map` (`<name>-gateway-policy`), `network_policy` (`<name>-engine`).
- Create-only data: a child annotated `CREATE_ONLY_ANNOTATION` (the gateway policy
  ConfigMap) has its `data` written only when it is created; the controller leaves it out
  of every later apply (gateway_policy.py).
- `CHILD_KINDS` (kinds.py): every kind render may emit, in apply order, with its plural
  and whether it is a workload; `APPLY_ORDER`, `WORKLOAD_API_VERSIONS` derive from it.
- `needs_download(dsd)`, `creates_model_cache(dsd)`, `workload_kind(dsd, sizing)`.
- `workload_replicas(dsd)`: the replica count written into the workload, None for hpa/keda.
- `endpoint(dsd, settings)`: `http://<svc>.<ns>.svc.<cluster domain>:<port>/v1`.
- `default_qps_query(dsd, gateway)` / `qps_query(dsd, gateway)`: the PromQL request rate
  autoscaling reads (with `gateway`: the gateway's requests plus its queue).
"""

from . import names
from .autoscaling import (
    GATEWAY_QUEUED,
    GATEWAY_REQUESTS,
    HPA_METRIC,
    PLACEHOLDERS,
    REQUEST_COUNTERS,
    average_value,
    default_qps_query,
    gateway_qps_query,
    milli_quantity,
    pod_name_regex,
    qps_query,
)
from .documents import dump_yaml_stream, load_documents, with_namespace
from .engine import PodRole, engine_command, served_model_name
from .gateway_policy import CREATE_ONLY_ANNOTATION, POLICY_KEY, default_policy
from .kinds import APPLY_ORDER, CHILD_KINDS, WORKLOAD_API_VERSIONS, ChildKind
from .labels import (
    APP_NAME,
    COMPONENT_LABEL,
    DEPLOYMENT_LABEL,
    INSTANCE_LABEL,
    MANAGED_BY_LABEL,
    MANAGED_BY_VALUE,
    NAME_LABEL,
    PART_OF_LABEL,
    PART_OF_VALUE,
    Component,
    adopt,
    children_selector,
    labels_for,
    owner_reference,
    pod_selector,
    pod_selector_labels,
    worker_selector_labels,
)
from .network import GATEWAY_APP
from .pipeline import render
from .service import endpoint
from .settings import (
    DEFAULT_ENGINE_IMAGES,
    DEFAULT_S3_DOWNLOAD_IMAGE,
    DEFAULT_SCRAPER_POD_LABELS,
    RenderSettings,
)
from .source import (
    MARKER_FILE,
    MODEL_CACHE_MOUNT,
    ModelSource,
    creates_model_cache,
    model_source,
    needs_download,
)
from .storage import retains_model_cache
from .workload import WorkloadKind, workload_kind, workload_replicas

__all__ = [
    "APPLY_ORDER",
    "APP_NAME",
    "CHILD_KINDS",
    "COMPONENT_LABEL",
    "CREATE_ONLY_ANNOTATION",
    "DEFAULT_ENGINE_IMAGES",
    "DEFAULT_S3_DOWNLOAD_IMAGE",
    "DEFAULT_SCRAPER_POD_LABELS",
    "DEPLOYMENT_LABEL",
    "GATEWAY_APP",
    "GATEWAY_QUEUED",
    "GATEWAY_REQUESTS",
    "HPA_METRIC",
    "INSTANCE_LABEL",
    "MANAGED_BY_LABEL",
    "MANAGED_BY_VALUE",
    "MARKER_FILE",
    "MODEL_CACHE_MOUNT",
    "NAME_LABEL",
    "PART_OF_LABEL",
    "PART_OF_VALUE",
    "PLACEHOLDERS",
    "POLICY_KEY",
    "REQUEST_COUNTERS",
    "WORKLOAD_API_VERSIONS",
    "ChildKind",
    "Component",
    "ModelSource",
    "PodRole",
    "RenderSettings",
    "WorkloadKind",
    "adopt",
    "average_value",
    "children_selector",
    "creates_model_cache",
    "default_policy",
    "default_qps_query",
    "dump_yaml_stream",
    "endpoint",
    "engine_command",
    "gateway_qps_query",
    "labels_for",
    "load_documents",
    "milli_quantity",
    "model_source",
    "names",
    "needs_download",
    "owner_reference",
    "pod_name_regex",
    "pod_selector",
    "pod_selector_labels",
    "qps_query",
    "render",
    "retains_model_cache",
    "served_model_name",
    "with_namespace",
    "worker_selector_labels",
    "workload_kind",
    "workload_replicas",
]
