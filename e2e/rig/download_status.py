"""Test tooling: what the operator's own status code makes of a download container that
ended, given what a local run of the rendered container left (its exit code and the
kubelet's termination message, e2e/rig/container.py).

``failed_download_condition`` builds the objects the reconciler observes for a Job the
podFailurePolicy failed (the Job's Failed condition with the Job controller's reason and
message, its pod with the container's terminated state) and returns the ModelCached
condition that ``controller.status.compute_status`` computes from them, through the same
``predicates.termination_message`` the reconciler uses.
"""

from __future__ import annotations

from deepseek_operator.api.status import Condition, ConditionType, DeepSeekDeploymentStatus
from deepseek_operator.controller.predicates import termination_message
from deepseek_operator.controller.status import Observed, compute_status

JOB = "model-download-0"
POD = f"{JOB}-abcde"


def failed_download_condition(exit_code: int, message: str,
                              namespace: str = "ai") -> Condition:
    """ModelCached for Job ``JOB`` failed by its podFailurePolicy after its pod's download
    container ended with ``exit_code`` and termination message ``message``."""
    pod = {"metadata": {"name": POD, "creationTimestamp": "2026-01-01T00:00:00Z"},
           "status": {"phase": "Failed", "containerStatuses": [{
               "name": "download", "ready": False, "restartCount": 0,
               "state": {"terminated": {"exitCode": exit_code, "reason": "Error",
                                        "message": message}}}]}}
    # The Job controller's words for a FailJob rule (Kubernetes docs, "Handling retriable and
    # non-retriable pod failures with Pod failure policy").
    job = {"metadata": {"name": JOB}, "spec": {"activeDeadlineSeconds": 7200},
           "status": {"failed": 1, "conditions": [{
               "type": "Failed", "status": "True", "reason": "PodFailurePolicy",
               "message": f"Container download for pod {namespace}/{POD} failed with exit "
                          f"code {exit_code} matching FailJob rule at index 0"}]}}
    claim = {"metadata": {"name": "model-cache"}, "status": {"phase": "Bound"}}
    observed = Observed(claim=claim, job=job, workload=None, job_pods=[pod],
                        download_failure=termination_message([pod], "download"))
    status = compute_status(generation=1, mode="none", observed=observed, previous=None,
                            now="2026-01-01T00:00:00Z", selector="", endpoint="",
                            base=DeepSeekDeploymentStatus())
    return next(c for c in status.conditions if c.type == ConditionType.MODEL_CACHED)
