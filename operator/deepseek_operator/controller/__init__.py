"""The controller: kopf handlers (``handlers``), the per-object Reconciler
(``reconciler``), one reconcile (``reconcile``: render, ``desired`` rules, ``plan``,
``cluster`` executes, ``status``), and the operator process (``run``, ``setup``).

Only ``cluster`` (and kopf itself) talks to the Kubernetes API; everything else here is
plain functions over dicts. docs/architecture.md draws the flow.
"""
