"""The QPS autoscaler: a pure policy (observations -> desired replicas) and, around it, the
metrics source and the loop that writes the workload's scale subresource."""

from deepseek_operator.autoscaler.policy import (
    Decision,
    Observation,
    PolicyConfig,
    PolicyState,
    decide,
)

__all__ = ["Decision", "Observation", "PolicyConfig", "PolicyState", "decide"]
