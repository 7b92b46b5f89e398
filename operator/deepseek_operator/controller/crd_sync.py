"""Keep the DeepSeekDeployment CRD the one this operator was built with, or say loudly that
it is not.

Why: Helm installs a chart's `crds/` once and never upgrades them, so after `helm upgrade`
the apiserver would keep serving the old schema and silently prune every field the new
operator added. Two parts:

- `apply_crd` (with `run --manage-crd`, the chart's `crds.manage`, on by default): at start
  the operator server-side applies its own CRD (field manager `deepseek-operator`), so an
  upgraded operator upgrades its API. Its RBAC allows `patch` on this one CRD only.
- `schema_drift` on every watch event of the CRD (the initial listing included): when the
  served CRD differs from the built one (not managed, or changed by hand or by an older
  GitOps copy), the operator logs an error, posts a Warning event on the CRD and sets the
  gauge `deepseek_operator_crd_schema_current` to 0.

docs/operations.md ("Upgrades") says which path fits Helm, GitOps and plain kubectl.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Final

from deepseek_operator.api.constants import GROUP, PLURAL
from deepseek_operator.api.crd import build_crd
from deepseek_operator.controller.plan import FIELD_MANAGER
from deepseek_operator.kubeapi import Resources

CRD_NAME: Final = f"{PLURAL}.{GROUP}"
_COMPARED: Final = ("schema", "subresources", "additionalPrinterColumns", "served", "storage")
_SHOWN: Final = 5


def _properties(schema: Mapping[str, Any], path: str = "") -> Iterator[str]:
    """Every property path of an OpenAPI schema (`spec.engine.args`), items descended
    into as `[]`."""
    for name, child in (schema.get("properties") or {}).items():
        here = f"{path}.{name}" if path else name
        yield here
        yield from _properties(child, here)
    items = schema.get("items")
    if isinstance(items, Mapping):
        yield from _properties(items, f"{path}[]")


def schema_drift(served: Mapping[str, Any], built: Mapping[str, Any]) -> list[str]:
    """How the served CRD (`served`, as the API returns it) differs from the built one
    (`build_crd()`), as short sentences: versions missing or extra, fields the served
    schema lacks (their values would be pruned) or has beyond the built one, and other
    differences by part (rules, printer columns). Empty when they serve the same API."""
    served_versions = {v["name"]: v for v in (served.get("spec") or {}).get("versions") or []}
    built_versions = {v["name"]: v for v in built["spec"]["versions"]}
    drift = [f"version {name} is not served" for name in built_versions
             if name not in served_versions]
    drift += [f"version {name} is served but unknown to this operator"
              for name in served_versions if name not in built_versions]
    for name, want in built_versions.items():
        have = served_versions.get(name)
        if have is None:
            continue
        want_schema = (want.get("schema") or {}).get("openAPIV3Schema") or {}
        have_schema = (have.get("schema") or {}).get("openAPIV3Schema") or {}
        want_fields, have_fields = set(_properties(want_schema)), set(_properties(have_schema))
        missing = sorted(want_fields - have_fields)
        extra = sorted(have_fields - want_fields)
        if missing:
            drift.append(f"version {name} lacks {len(missing)} field(s), whose values the "
                         f"apiserver prunes: {', '.join(missing[:_SHOWN])}"
                         + (", ..." if len(missing) > _SHOWN else ""))
        if extra:
            drift.append(f"version {name} has {len(extra)} field(s) this operator does not "
                         f"know: {', '.join(extra[:_SHOWN])}" + (", ..." if len(extra) > _SHOWN
                                                                   else ""))
        if not missing and not extra:
            parts = [part for part in _COMPARED if have.get(part) != want.get(part)]
            if parts:
                drift.append(f"version {name} differs in {', '.join(parts)} (validation "
                             "rules, defaults or columns)")
    return drift


def apply_crd(resources: Resources) -> dict[str, Any]:
    """Server-side apply the built CRD (field manager `deepseek-operator`, conflicts
    forced: the fields are this operator's API, whoever installed them first, e.g. Helm).
    Returns the CRD as stored. Raises ApiException (403 without `patch` on the CRD, or
    `create` when it does not exist yet)."""
    resource = resources.require("apiextensions.k8s.io/v1", "CustomResourceDefinition")
    stored = resource.server_side_apply(body=build_crd(), name=CRD_NAME,
                                        field_manager=FIELD_MANAGER, force_conflicts=True)
    return dict(stored.to_dict())
