"""Test rig for the autoscaler: a real Prometheus, model-server stand-ins and a load generator.

Modules, one job each:

- ``model_server``: an OpenAI-compatible stand-in (one process per simulated pod) that
  exports vLLM- or SGLang-style metrics.
- ``prometheus``: starts and stops the Debian ``prometheus`` binary on loopback with
  file-based service discovery.
- ``fleet``: keeps one stand-in process per pod in sync with a desired set and registers
  them with Prometheus.
- ``load``: sends chat completions at a set rate, round-robin over the live stand-ins.
- ``fixtures``: pytest fixtures wiring the above together.
"""
