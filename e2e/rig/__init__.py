"""Test rig for the autoscaler: a real Prometheus, model-server stand-ins and a load generator.

Modules, one job each:

- ``model_server``: an OpenAI-compatible stand-in (one process per simulated pod) that
  exports vLLM- or SGLang-style metrics.
- ``prometheus``: starts and stops the Debian ``prometheus`` binary on loopback with
  file-based service discovery.
- ``fleet``: keeps one stand-in process per pod in sync with a desired set and registers
  them with Prometheus.
- ``load``: sends chat completions at a set rate, round-robin over the live stand-ins.
- ``podsync``: keeps a fleet at one stand-in per Ready pod of a DeepSeekDeployment.
- ``fixtures``: pytest fixtures wiring the above together.
"""
