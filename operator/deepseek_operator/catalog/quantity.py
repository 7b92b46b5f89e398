"""Storage quantities as the spec accepts them (``900Gi``, ``1.5T``, ``100000000000``) -> bytes.

Written here rather than taken from the kubernetes client (``kubernetes.utils``), because
the layer contract (.importlinter) keeps the Kubernetes client out of api, catalog and
render; the grammar is the one the CRD admits for ``spec.storage.size``: a decimal number
with an optional binary (Ki..Ei) or decimal (k..E) suffix. Values read back from the API
(which may be canonicalised, e.g. ``1e3``) are compared in the controller, with the
client's parser.
"""

import re
from decimal import Decimal
from typing import Final

_SUFFIXES: Final[dict[str, int]] = {
    "": 1,
    **{s: 1024 ** (i + 1) for i, s in enumerate(("Ki", "Mi", "Gi", "Ti", "Pi", "Ei"))},
    **{s: 1000 ** (i + 1) for i, s in enumerate(("k", "M", "G", "T", "P", "E"))},
}
_QUANTITY = re.compile(r"([0-9]+(?:\.[0-9]+)?)(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?")


def quantity_bytes(text: str) -> Decimal:
    """The value of a storage quantity in bytes (exact, as a Decimal).

    Raises ValueError naming the text when it is not a quantity of that grammar.
    """
    match = _QUANTITY.fullmatch(text)
    if match is None:
        raise ValueError(f"{text!r} is not a storage quantity such as 900Gi or 1T")
    number, suffix = match.group(1), match.group(2) or ""
    return Decimal(number) * _SUFFIXES[suffix]
