"""Benchmarks that run without a cluster (``make bench-autoscaler``); outputs go to out/."""
