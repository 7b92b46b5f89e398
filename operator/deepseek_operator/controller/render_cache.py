"""The last rendered children of each DeepSeekDeployment, reused while nothing render
reads has changed.

A deployment is reconciled about a dozen times on its way to Ready, once per burst of
child events, and each time ``render`` produced the same objects again: templates, YAML
parsing and sizing were a third of the operator's CPU time with 200 deployments starting
at once. Render is a pure function of the DeepSeekDeployment (its metadata, spec and the
autoscaler's decided replica count in status) and the RenderSettings, so its result is
kept per object under a fingerprint of exactly those inputs, as compressed JSON text: a
copy for each reconcile (which may change the objects it gets) costs a ``json.loads``,
and the text takes a few KiB per deployment.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from typing import Any

from deepseek_operator.api.resource import DeepSeekDeployment
from deepseek_operator.controller.packed import pack_text, unpack
from deepseek_operator.render import RenderSettings, render

MAX_ENTRIES = 4096
"""Deployments whose render is kept (least recently used dropped first): a few KiB each."""

# Metadata that changes at every write of the object and that render never reads.
_VOLATILE_METADATA = ("resourceVersion", "managedFields")


def fingerprint(dsd: DeepSeekDeployment, settings: RenderSettings) -> str:
    """Everything ``render(dsd, settings)`` depends on, as text: the settings, the
    metadata but its resourceVersion and managedFields, the spec, and
    status.autoscaling.desiredReplicas (the workload's replica count in mode operator)."""
    data = dsd.model_dump(mode="json", by_alias=True, exclude={"status"})
    data["metadata"] = {key: value for key, value in data["metadata"].items()
                        if key not in _VOLATILE_METADATA}
    decided = dsd.status.autoscaling.desired_replicas if dsd.status.autoscaling else None
    return json.dumps([repr(settings), data, decided], sort_keys=True, separators=(",", ":"))


class RenderCache:
    """``render`` with the last result per DeepSeekDeployment kept (thread-safe)."""

    def __init__(self, max_entries: int = MAX_ENTRIES) -> None:
        self.max_entries = max_entries
        self.hits = 0
        self.misses = 0
        self._entries: OrderedDict[tuple[str, str], tuple[str, bytes]] = OrderedDict()
        self._lock = threading.Lock()

    def render(self, dsd: DeepSeekDeployment,
               settings: RenderSettings) -> list[dict[str, Any]]:
        """What ``render(dsd, settings)`` returns (a fresh copy the caller may change).

        Raises what render raises (InvalidSpecError naming the field); a failed render is
        not kept."""
        key = (dsd.metadata.namespace, dsd.metadata.name)
        mark = fingerprint(dsd, settings)
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and entry[0] == mark:
                self._entries.move_to_end(key)
                self.hits += 1
                packed = entry[1]
            else:
                packed = b""
                self.misses += 1
        if packed:
            copy: list[dict[str, Any]] = unpack(packed)
            return copy
        rendered = render(dsd, settings)
        try:
            text = json.dumps(rendered, separators=(",", ":"))
        except (TypeError, ValueError):  # a value JSON cannot hold: render every time
            return rendered
        if json.loads(text) != rendered:  # e.g. a non-string key: the copy would differ
            return rendered
        packed = pack_text(text)
        with self._lock:
            self._entries[key] = (mark, packed)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
        return rendered
