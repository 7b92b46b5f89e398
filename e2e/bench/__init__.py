"""Benchmarks: ``make bench-autoscaler`` (no cluster) and ``make bench-scale`` (the local
control plane); outputs go to out/."""
