"""The ``status.sizing`` block of a DeepSeekDeployment, from the catalog's sizing."""

from __future__ import annotations

from deepseek_operator.api.resource import DeepSeekDeployment
from deepseek_operator.api.status import SizingStatus
from deepseek_operator.catalog import size_deployment


def sizing_status(dsd: DeepSeekDeployment) -> SizingStatus:
    """Sizing of one replica as reported in status. Raises SizingError (an
    InvalidSpecError) when the spec does not fit — render raises it first in a reconcile."""
    return size_deployment(dsd.spec).to_status()
