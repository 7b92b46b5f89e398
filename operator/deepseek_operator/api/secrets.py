"""Secrets never travel in the spec: the engine flags and environment variable names that
carry one, and the regular expressions that refuse them (in CEL and in pydantic).

Everything in a DeepSeekDeployment's spec is copied into objects many people can read
(the Deployment's container args and env, the runtime ConfigMap) and the spec itself is
readable by every holder of `model:read`. A secret therefore enters only by reference:

- the engine's API key: `spec.engine.apiKeySecret` (a key of a Secret). The pod gets it
  as an environment variable from `secretKeyRef`; the gateway reads the Secret and sends
  `Authorization: Bearer <key>` to the engine.
- any other secret the engine needs (a Hugging Face token, ...): `spec.engine.env` with
  `valueFrom.secretKeyRef`.

How the engines take an API key (the flags refused in `spec.engine.args`):

- vLLM: `--api-key`, or the environment variable `VLLM_API_KEY` (vllm/envs.py; in
  vllm/entrypoints/openai/api_server.py `build_app`, `args.api_key or
  [envs.VLLM_API_KEY]` installs `AuthenticationMiddleware`, which checks
  `Authorization: Bearer` on /v1 paths only, so /health and /metrics stay open). The
  operator sets `VLLM_API_KEY` from the Secret. `--hf-token` is vLLM's Hugging Face token
  flag (engine arguments, "Model configuration").
- SGLang: `--api-key` and `--admin-api-key` only (sglang/srt/server_args.py; no
  environment variable: `SGLANG_API_KEY` is read by clients, not by the server).
  `add_api_key_middleware` in sglang/srt/utils.py checks `Authorization: Bearer` on every
  path except /health and /metrics. The operator sets the environment variable
  `ENGINE_API_KEY_ENV` from the Secret and passes `--api-key $(ENGINE_API_KEY_ENV)`: the
  kubelet expands `$(VAR)` in container args from the container's environment
  (Kubernetes "Define a command and arguments": "use environment variables in your
  arguments"), so the pod spec holds the reference, never the value.

Both engines parse their command line with argparse, which takes an unambiguous prefix of
a long flag for it, and vLLM reads `_` as `-`: a flag is refused when the argument is any
prefix of a secret flag (`--api-k`), with either separator, followed by `=`, white space
or nothing.
"""

import re
from typing import Final

SECRET_FLAGS: Final = ("--api-key", "--admin-api-key", "--hf-token")
"""Engine flags whose value is a secret (vLLM and SGLang; see the module docstring)."""

VLLM_API_KEY_ENV: Final = "VLLM_API_KEY"
"""The environment variable vLLM reads its API key from."""

ENGINE_API_KEY_ENV: Final = "DEEPSEEK_ENGINE_API_KEY"
"""The environment variable the operator puts SGLang's API key in, for `$(...)` in args."""

RESERVED_ENV: Final = (VLLM_API_KEY_ENV, ENGINE_API_KEY_ENV)
"""spec.engine.env names the operator sets from spec.engine.apiKeySecret."""


def _prefixes(flag: str) -> str:
    """RE2/Python regex matching every non-empty prefix of `flag`'s name (after `--`),
    `-` also spelled `_`: `api-key` -> `a(p(i([-_](k(e(y)?)?)?)?)?)?`."""
    pattern = ""
    for char in reversed(flag.removeprefix("--")):
        atom = "[-_]" if char == "-" else re.escape(char)
        pattern = f"{atom}({pattern})?" if pattern else atom
    return pattern


SECRET_FLAG_ARG: Final = (
    "^--(" + "|".join(_prefixes(flag) for flag in SECRET_FLAGS) + ")([^-_A-Za-z0-9]|$)"
)
"""An engine argument that names a flag of SECRET_FLAGS (module docstring). The same text
is a CEL `matches` (RE2) and a Python `re.search` pattern."""

SECRET_ENV_NAME: Final = (
    "(?i)^(.*[-_.])?(TOKEN|API[-_.]?KEY|SECRET|SECRET[-_.]KEY|SECRET[-_.]ACCESS[-_.]KEY|"
    "PASSWORD|PASSWD|CREDENTIALS?|PRIVATE[-_.]KEY)$"
)
"""Environment variable names that hold a secret by convention (HF_TOKEN,
HUGGING_FACE_HUB_TOKEN, AWS_SECRET_ACCESS_KEY, OPENAI_API_KEY, ...): a literal `value` is
refused for them, `valueFrom.secretKeyRef` is the way."""

ARGS_MESSAGE: Final = (
    "must not carry a secret: --api-key, --admin-api-key, --hf-token "
    "(or an abbreviation) would be readable by everyone who can read the Deployment. Put "
    "the engine API key in a Secret and name it in spec.engine.apiKeySecret (name, key); "
    "give other secrets as spec.engine.env entries with valueFrom.secretKeyRef"
)
ENV_VALUE_MESSAGE: Final = (
    "this variable holds a secret (its name ends in TOKEN, KEY, SECRET, PASSWORD or "
    "CREDENTIALS): a literal value would be readable by everyone who can read the "
    "Deployment; use valueFrom.secretKeyRef, or spec.engine.apiKeySecret for the engine "
    "API key"
)
RESERVED_ENV_MESSAGE: Final = (
    f"{VLLM_API_KEY_ENV} and {ENGINE_API_KEY_ENV} are set by the operator from "
    "spec.engine.apiKeySecret, the API key the gateway also sends: set that field instead"
)


def is_secret_flag_arg(arg: str) -> bool:
    """True when the engine argument `arg` names a flag of SECRET_FLAGS."""
    return re.search(SECRET_FLAG_ARG, arg) is not None


def is_secret_env_name(name: str) -> bool:
    """True when the environment variable `name` holds a secret by convention."""
    return re.search(SECRET_ENV_NAME, name) is not None
