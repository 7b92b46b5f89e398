"""The syntax of the API's string fields: one regular expression per syntax, and what it
accepts in words.

Each pattern is checked twice: by pydantic (`Field(pattern=...)`, Rust regex) and by the
apiserver, where the generated CRD turns it into a CEL rule `self.matches(...)` (RE2)
whose message is `pattern_message(pattern)`. So patterns use only syntax both engines read
the same way (no `\\w`, which is Unicode in Rust regex and ASCII in RE2), and no error
message shows a regex: a regex is no help to someone writing YAML.

Kubernetes name syntaxes are from "Object Names and IDs" in the Kubernetes documentation:
a DNS label (RFC 1123) is at most 63 lowercase letters, digits and '-', starting and ending
with a letter or digit; an RFC 1035 label also starts with a letter; a DNS subdomain is
labels joined by '.'. Lengths are checked by `max_length`, not here.
"""

from typing import Final

_LABEL_TAIL = r"([-a-z0-9]*[a-z0-9])?"
_DNS_LABEL = rf"[a-z0-9]{_LABEL_TAIL}"
_DNS_SUBDOMAIN = rf"{_DNS_LABEL}(\.{_DNS_LABEL})*"
_WORD = "A-Za-z0-9_"  # RE2's \w, spelled out

DNS_LABEL_PART: Final = _DNS_LABEL
"""A DNS label, unanchored: to compose into larger syntaxes (namespaces, registries)."""
DNS_SUBDOMAIN_PART: Final = _DNS_SUBDOMAIN
"""A DNS subdomain, unanchored: to compose into larger syntaxes."""
NAME: Final = rf"^[a-z]{_LABEL_TAIL}$"
"""An RFC 1035 label: metadata.name of a DeepSeekDeployment and access role names (both
prefix names of Kubernetes objects, and Service names must start with a letter)."""
OPTIONAL_DNS_LABEL: Final = rf"^$|^{_DNS_LABEL}$"
"""A namespace, or empty."""
OPTIONAL_DNS_SUBDOMAIN: Final = rf"^$|^{_DNS_SUBDOMAIN}$"
"""A reference to a Kubernetes object (Secret, claim, StorageClass, ...), or empty."""
MODEL_NAME: Final = r"^[a-z0-9]([-a-z0-9._]*[a-z0-9])?$"
MODEL_URI: Final = (
    rf"^$|^hf://[A-Za-z0-9][-{_WORD}.]*/[-{_WORD}.]+$|^s3://[a-z0-9][-a-z0-9.]*(/\S*)?$"
    rf"|^pvc://{_DNS_SUBDOMAIN}(/\S*)?$"
)
IMAGE: Final = r"^$|^[A-Za-z0-9][-A-Za-z0-9._/:@]*$"
"""A container image reference as the runtime reads it, [registry[:port]/]path[:tag][@digest],
or empty. Loose on purpose (the registry has the final word), strict enough to refuse
spaces, quotes and shell syntax; the operator's image settings use the same."""
REVISION: Final = rf"^[-{_WORD}./]+$"
SERVED_NAME: Final = rf"^[-{_WORD}./:]*$"
GPU_TYPE: Final = r"^$|^[A-Za-z0-9][-A-Za-z0-9.]*$"
QUANTITY: Final = r"^$|^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$"
ENV_VAR_NAME: Final = r"^[-._a-zA-Z][-._a-zA-Z0-9]*$"
PROMETHEUS_URL: Final = r"^https?://\S+$"
SECRET_KEY: Final = r"^[-._a-zA-Z0-9]+$"
"""A key of a Secret's data (Kubernetes: alphanumerics, '-', '_' and '.')."""
CONDITION_TYPE: Final = rf"^({_DNS_SUBDOMAIN}/)?(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$"
"""metav1.Condition's type: an optional DNS subdomain prefix and '/', then a name."""
CONDITION_REASON: Final = r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"
"""metav1.Condition's reason."""

PATTERN_HINTS: Final[dict[str, str]] = {
    NAME: (
        "a DNS label: lowercase letters, digits and '-', starting with a letter and ending "
        "with a letter or digit"
    ),
    OPTIONAL_DNS_LABEL: (
        "a DNS label: lowercase letters, digits and '-', starting and ending with a letter or "
        "digit"
    ),
    OPTIONAL_DNS_SUBDOMAIN: (
        "a DNS subdomain: lowercase letters, digits, '-' and '.', each part starting and "
        "ending with a letter or digit"
    ),
    MODEL_NAME: (
        "a name of lowercase letters, digits, '-', '.' and '_', starting and ending with a "
        "letter or digit"
    ),
    MODEL_URI: (
        "hf://ORG/REPO, s3://BUCKET/PATH or pvc://CLAIM/PATH, without credentials "
        "(no user:password@): put them in a Secret named by spec.model.credentialsSecret"
    ),
    IMAGE: (
        "an image reference such as vllm/vllm-openai:v0.8.5: letters, digits, '-', '_', "
        "'.', '/', ':' and '@', starting with a letter or digit"
    ),
    REVISION: "a branch, tag or commit: letters, digits, '-', '_', '.' and '/'",
    SERVED_NAME: "a name of letters, digits, '-', '_', '.', '/' and ':'",
    GPU_TYPE: (
        "a catalog GPU such as H100-80GB: letters, digits, '-' and '.', starting "
        "with a letter or digit"
    ),
    QUANTITY: "a Kubernetes quantity such as 900Gi or 1T",
    ENV_VAR_NAME: "a variable name of letters, digits, '_', '-' and '.', not starting with a digit",
    PROMETHEUS_URL: "an http:// or https:// URL without spaces",
    SECRET_KEY: "a Secret key: letters, digits, '-', '_' and '.'",
    CONDITION_TYPE: (
        "a condition type such as Ready: letters, digits, '-', '_' and '.', starting and "
        "ending with a letter or digit, optionally after a DNS subdomain and '/'"
    ),
    CONDITION_REASON: (
        "a CamelCase reason: letters, digits, '_', ',' and ':', starting with a letter"
    ),
}
"""What each pattern accepts, in words, completing "must be ...". Where a pattern also
accepts "", the field's description says what empty means."""


def pattern_message(pattern: str) -> str:
    """The error message for a value that does not match `pattern`: "must be <what it
    accepts>". Raises KeyError for a pattern without a hint in PATTERN_HINTS (every
    pattern of the API needs one)."""
    return f"must be {PATTERN_HINTS[pattern]}"
