"""Compare Kubernetes resource quantities (``"100Gi"``, ``"0.5"``, ``"500m"``) by value.

The API server stores quantities in canonical form (``"1000m"`` comes back as ``"1"``), so
a textual comparison would see drift where there is none. The parsing is delegated to the
kubernetes client's ``parse_quantity``.
"""

from __future__ import annotations

from kubernetes.utils import parse_quantity


def quantity_less(a: str, b: str) -> bool:
    """True when quantity ``a`` is smaller than ``b``; False if either is not a quantity."""
    try:
        return bool(parse_quantity(a) < parse_quantity(b))  # type: ignore[no-untyped-call]
    except ValueError:
        return False


def same_quantity(a: str, b: str) -> bool:
    """True when both strings are quantities with the same value; False if either is not."""
    try:
        return bool(parse_quantity(a) == parse_quantity(b))  # type: ignore[no-untyped-call]
    except ValueError:
        return False
