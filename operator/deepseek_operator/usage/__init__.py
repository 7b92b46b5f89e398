"""Usage statistics with differential privacy (`deepseek-operator usage-report`).

The pipeline, one module a step: `trail` parses the gateway's audit trail into allowed
requests; `contributions` groups them per UTC day, user and (namespace, deployment, role)
cell and caps the cells one user counts in; `mechanism` clamps, sums and adds noise with
OpenDP; `ledger` keeps the per-day privacy budget; `report` formats the release; `run`
joins them; `limits` holds the limits of ε and of the bounds. Import the modules
themselves: this package loads nothing (OpenDP is imported by `mechanism` only). The
unit of privacy is one user's whole UTC day of requests (docs/usage-report.md).

Imports neither kopf nor the Kubernetes client: it reads files only.
"""
