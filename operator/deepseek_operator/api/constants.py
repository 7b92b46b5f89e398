"""Names of the DeepSeekDeployment API: group, version, kind and their derived forms."""

from typing import Final

GROUP: Final = "deepseek-operator.io"
VERSION: Final = "v1alpha1"
API_VERSION: Final = f"{GROUP}/{VERSION}"
KIND: Final = "DeepSeekDeployment"
LIST_KIND: Final = "DeepSeekDeploymentList"
PLURAL: Final = "deepseekdeployments"
SINGULAR: Final = "deepseekdeployment"
SHORT_NAME: Final = "dsd"
CATEGORIES: Final = ("ai",)
CRD_NAME: Final = f"{PLURAL}.{GROUP}"

# A DeepSeekDeployment's name prefixes its children (`<name>-rbac`, `<name>-runtime`,
# `<name>-<role>`, the Service): 40 characters leave room for those suffixes within the
# 63-character DNS label limit that Service and label values impose.
MAX_NAME_LENGTH: Final = 40
