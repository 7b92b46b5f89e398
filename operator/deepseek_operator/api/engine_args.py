"""Reading spec.engine.args as the engines read their command line, and the one engine
argument sizing depends on: the KV cache's data type.

Both engines parse their command line with Python's argparse (vLLM: `vllm serve --help`;
SGLang: `python3 -m sglang.launch_server --help`): a flag's value is the next element or
follows `=` in the same one, a repeated flag keeps its last value, and an unambiguous
prefix of a long flag names it. vLLM also reads `_` in a long flag as `-`.

`--kv-cache-dtype` sets the data type of the KV cache; "auto" (the default) is the model's
activation dtype, 16 bits for every model the operator serves. An fp8 KV cache holds one
byte per element instead of two, so sizing halves the KV cache for it (docs/sizing.md).
The values each engine accepts are from its argument parser: vLLM's `CacheDType` in
vllm/config/cache.py, SGLang's `--kv-cache-dtype` choices in sglang/srt/server_args.py.
Values that are neither 16-bit nor fp8 (vLLM fp8_ds_mla, fp8_inc, int8; SGLang fp4_e2m1)
store scales or other layouts that sizing does not model, so they are refused.
"""

from collections.abc import Sequence
from typing import Final, Literal

EngineType = Literal["vllm", "sglang"]
KVCacheFormat = Literal["16-bit", "fp8"]
"""How the KV cache stores an element: 2 bytes, or 1 byte for fp8."""

KV_CACHE_DTYPE_FLAG: Final = "--kv-cache-dtype"

KV_CACHE_DTYPES: Final[dict[EngineType, dict[str, KVCacheFormat]]] = {
    "vllm": {
        "auto": "16-bit",
        "bfloat16": "16-bit",
        "float16": "16-bit",
        "fp8": "fp8",
        "fp8_e4m3": "fp8",
        "fp8_e5m2": "fp8",
    },
    "sglang": {
        "auto": "16-bit",
        "bf16": "16-bit",
        "bfloat16": "16-bit",
        "fp8_e4m3": "fp8",
        "fp8_e5m2": "fp8",
    },
}
"""The `--kv-cache-dtype` values of each engine that sizing knows, and their format."""


def flag_name(arg: str) -> str | None:
    """The option an argument names (`--max_model_len=1` -> `--max-model-len`), or None
    for a value."""
    name = arg.partition("=")[0]
    if not name.startswith("-") or name in ("-", "--"):
        return None
    return "--" + name[2:].replace("_", "-") if name.startswith("--") else name


def names_flag(name: str, names: Sequence[str]) -> bool:
    """True when the option `name` (from `flag_name`) is one of `names` or a prefix of a
    long one, which argparse takes for it when unambiguous (an ambiguous one fails in the
    engine, so treating it as `names` loses nothing)."""
    return any(name == known or (name.startswith("--") and known.startswith(name))
               for known in names)


def kv_cache_dtype_issues(engine: EngineType, args: Sequence[str]) -> list[tuple[int, str]]:
    """(index in `args`, message) for every `--kv-cache-dtype` whose value `engine` does
    not accept or sizing does not know, and for one without a value."""
    known = KV_CACHE_DTYPES[engine]
    accepted = (
        f"{engine} values sizing knows are "
        + ", ".join(f"{value} ({fmt})" for value, fmt in known.items())
    )
    issues = []
    for index, value in _kv_cache_dtypes(args):
        if value is None:
            issues.append((index, f"{KV_CACHE_DTYPE_FLAG} needs a value: the {accepted}"))
        elif value not in known:
            issues.append((index, f"{KV_CACHE_DTYPE_FLAG} {value!r} is refused: the {accepted}"))
    return issues


def kv_cache_format(engine: EngineType, args: Sequence[str]) -> KVCacheFormat:
    """The KV cache format `args` ask `engine` for: the last `--kv-cache-dtype`'s, else
    auto's. Raises KeyError for a value `kv_cache_dtype_issues` reports."""
    values = [value for _, value in _kv_cache_dtypes(args)]
    last = values[-1] if values else "auto"
    return KV_CACHE_DTYPES[engine][last or ""]


def _kv_cache_dtypes(args: Sequence[str]) -> list[tuple[int, str | None]]:
    """(index, value) of each `--kv-cache-dtype` in `args`; value None when missing."""
    found: list[tuple[int, str | None]] = []
    for index, arg in enumerate(args):
        name = flag_name(arg)
        if name is None or not names_flag(name, (KV_CACHE_DTYPE_FLAG,)):
            continue
        if "=" in arg:
            found.append((index, arg.partition("=")[2]))
        else:
            found.append((index, args[index + 1] if index + 1 < len(args) else None))
    return found
