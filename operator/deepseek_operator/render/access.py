"""Access rules of a DeepSeekDeployment: the `<name>-rbac` ConfigMap (permissions.yaml) and,
for every role that has bindings, a Role and RoleBinding `<name>-<role>` granting the
Kubernetes verbs behind its permissions:

- model:read        get, list, watch this DeepSeekDeployment;
- model:write       update, patch, delete it, and get/update/patch its scale subresource;
- system:configure  update and patch its `<name>-gateway-policy` ConfigMap (the gateway's
                    queue and concurrency limits, whose data the operator writes only
                    when it creates the ConfigMap), and get on it and on the read-only
                    `<name>-rbac` and `<name>-runtime` ConfigMaps (the operator rewrites
                    those two from the spec, so they are not editable);
- model:query       create on the `deepseekdeployments/query` subresource of it: the
                    gateway asks a SubjectAccessReview for exactly this (verb create, group
                    deepseek-operator.io, resource deepseekdeployments, subresource query,
                    name <name>) before it forwards a request, so `kubectl auth can-i create
                    deepseekdeployments.deepseek-operator.io/<name> --subresource=query`
                    and the gateway agree. The apiserver serves no such subresource: the
                    rule is only a permission to check. It grants no read of the object
                    (no `get`): a role that should also see the DeepSeekDeployment adds
                    model:read.

All rules are limited by resourceNames to this DeepSeekDeployment's objects (list and watch
then need a metadata.name field selector, as Kubernetes RBAC works). ServiceAccount
subjects without a namespace are in the custom resource's.
"""

from collections.abc import Callable
from typing import Any, Final

import yaml

from ..api import GROUP, PLURAL, DeepSeekDeployment, Permission, Subject
from .names import (
    gateway_policy_config_map,
    rbac_config_map,
    role,
    runtime_config_map,
    service_account,
)
from .templating import SAFE_DUMPER, render_manifest

RBAC_API_GROUP: Final = "rbac.authorization.k8s.io"
PERMISSIONS_KEY: Final = "permissions.yaml"
QUERY_SUBRESOURCE: Final = "query"
QUERY_RESOURCE: Final = f"{PLURAL}/{QUERY_SUBRESOURCE}"
"""The resource model:query grants, as an RBAC rule writes it (`deepseekdeployments/query`)."""
QUERY_VERB: Final = "create"
"""The verb model:query grants on QUERY_RESOURCE (a request to the model creates a completion)."""


def _read(dsd: DeepSeekDeployment) -> list[dict[str, Any]]:
    return [
        {
            "apiGroups": [GROUP],
            "resources": [PLURAL],
            "resourceNames": [dsd.metadata.name],
            "verbs": ["get", "list", "watch"],
        }
    ]


def _write(dsd: DeepSeekDeployment) -> list[dict[str, Any]]:
    return [
        {
            "apiGroups": [GROUP],
            "resources": [PLURAL],
            "resourceNames": [dsd.metadata.name],
            "verbs": ["update", "patch", "delete"],
        },
        {
            "apiGroups": [GROUP],
            "resources": [f"{PLURAL}/scale"],
            "resourceNames": [dsd.metadata.name],
            "verbs": ["get", "update", "patch"],
        },
    ]


def _configure(dsd: DeepSeekDeployment) -> list[dict[str, Any]]:
    policy = gateway_policy_config_map(dsd)
    return [
        {
            "apiGroups": [""],
            "resources": ["configmaps"],
            "resourceNames": [rbac_config_map(dsd), runtime_config_map(dsd), policy],
            "verbs": ["get"],
        },
        {
            "apiGroups": [""],
            "resources": ["configmaps"],
            "resourceNames": [policy],
            "verbs": ["update", "patch"],
        },
    ]


def _query(dsd: DeepSeekDeployment) -> list[dict[str, Any]]:
    return [
        {
            "apiGroups": [GROUP],
            "resources": [QUERY_RESOURCE],
            "resourceNames": [dsd.metadata.name],
            "verbs": [QUERY_VERB],
        }
    ]


PERMISSION_RULES: Final[dict[Permission, Callable[[DeepSeekDeployment], list[dict[str, Any]]]]] = {
    "model:read": _read,
    "model:write": _write,
    "system:configure": _configure,
    "model:query": _query,
}
"""RBAC rules granted by each permission (module docstring)."""


def rbac_subject(dsd: DeepSeekDeployment, subject: Subject) -> dict[str, str]:
    """`subject` as an RBAC subject (a ServiceAccount defaults to the custom resource's
    namespace)."""
    if subject.kind == "ServiceAccount":
        return {
            "kind": "ServiceAccount",
            "name": subject.name,
            "namespace": subject.namespace or dsd.metadata.namespace,
        }
    return {"kind": subject.kind, "apiGroup": RBAC_API_GROUP, "name": subject.name}


def bound_subjects(dsd: DeepSeekDeployment) -> dict[str, list[dict[str, str]]]:
    """Role name -> its RBAC subjects over all bindings, in order, without repeats; only
    roles that have bindings, in the order of spec.access.roles."""
    subjects: dict[str, list[dict[str, str]]] = {}
    for binding in dsd.spec.access.bindings:
        bound = subjects.setdefault(binding.role, [])
        for subject in binding.subjects:
            entry = rbac_subject(dsd, subject)
            if entry not in bound:
                bound.append(entry)
    return {name: subjects[name] for name in dsd.spec.access.roles if name in subjects}


def permissions_yaml(dsd: DeepSeekDeployment) -> str:
    """permissions.yaml: roles -> permissions, and bindings with effective subjects."""
    document = {
        "roles": {name: list(perms) for name, perms in dsd.spec.access.roles.items()},
        "bindings": [
            {"role": name, "subjects": subjects}
            for name, subjects in bound_subjects(dsd).items()
        ],
    }
    header = (
        f"# Access to DeepSeekDeployment {dsd.metadata.namespace}/{dsd.metadata.name}, "
        "rendered by deepseek-operator from spec.access.\n"
    )
    return header + yaml.dump(document, Dumper=SAFE_DUMPER, sort_keys=False, allow_unicode=True)


def rbac_config_map_manifest(dsd: DeepSeekDeployment) -> dict[str, Any]:
    """The `<name>-rbac` ConfigMap (without labels and owner reference)."""
    return render_manifest(
        "configmap.yaml.j2",
        name=rbac_config_map(dsd),
        data={PERMISSIONS_KEY: permissions_yaml(dsd)},
    )


def role_manifests(dsd: DeepSeekDeployment) -> list[dict[str, Any]]:
    """A Role per bound role, then a RoleBinding per bound role (without labels and owner
    references)."""
    bound = bound_subjects(dsd)
    roles = [
        render_manifest(
            "role.yaml.j2",
            name=role(dsd, name),
            rules=[
                rule
                for permission in dsd.spec.access.roles[name]
                for rule in PERMISSION_RULES[permission](dsd)
            ],
        )
        for name in bound
    ]
    bindings = [
        render_manifest("rolebinding.yaml.j2", name=role(dsd, name), subjects=subjects)
        for name, subjects in bound.items()
    ]
    return roles + bindings


def service_account_manifest(dsd: DeepSeekDeployment) -> dict[str, Any]:
    """The engine pods' ServiceAccount `<name>` (token not mounted; without labels and
    owner reference)."""
    return render_manifest("serviceaccount.yaml.j2", name=service_account(dsd))
