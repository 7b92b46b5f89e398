"""The jinja2 environment of the manifest templates, and the one way values enter them.

Templates (package data in `templates/`) produce YAML text that a safe loader turns
into a dict. A value reaches YAML only through the `tojson` filter, which writes it as a
JSON scalar or collection (JSON is YAML), so no user string can add keys, documents or
anchors. The environment enforces it: an expression without `| tojson` is an error.
"""

import functools
import json
import re
from typing import Any

import jinja2
import yaml

# Characters a YAML parser refuses or reads as line breaks inside a double-quoted scalar:
# everything outside the YAML 1.1 "printable" set, which PyYAML enforces (tab, LF, CR,
# 0x20-0x7E, 0x85, 0xA0-0xD7FF, 0xE000-0xFFFD, 0x10000-0x10FFFF), plus the line breaks
# NEL, LS and PS and the byte-order mark. They are written as escapes. One regex pass: a
# per-character check in Python took a third of rendering's CPU (make bench-scale).
_NEEDS_ESCAPE = re.compile(
    "[^\t\n\r\x20-\x7e\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]"
    "|[\x85\u2028\u2029\ufeff]")
# libyaml's parser (in PyYAML's wheels) when present: the same safe constructor and
# resolver, and the pure-Python parser took most of a reconcile's CPU (make bench-scale).
_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
SAFE_DUMPER: type[yaml.SafeDumper] = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
"""libyaml's emitter with the safe representer when present (as the loader above)."""


class YamlValue(str):
    """Text produced by `tojson`: safe to place anywhere a YAML value may stand."""


def _yaml_escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def _check_no_floats(value: Any, where: str = "value") -> None:
    # PyYAML reads YAML 1.1, where JSON's `1e+20` is a string: floats must be formatted
    # on purpose (as Kubernetes quantities or strings) before they reach a template.
    if isinstance(value, float):
        raise TypeError(f"{where}: format floats as strings before templating (got {value!r})")
    if isinstance(value, dict):
        for key, item in value.items():
            _check_no_floats(item, f"{where}.{key}")
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            _check_no_floats(item, f"{where}[{index}]")


def tojson(value: Any) -> YamlValue:
    """`value` (str, int, bool, None, or lists/dicts of them) as a YAML flow value.

    Raises jinja2.UndefinedError for a variable the template context lacks, TypeError for
    floats and other types JSON cannot write exactly.
    """
    if isinstance(value, jinja2.Undefined):
        str(value)  # StrictUndefined raises UndefinedError naming the variable
        raise jinja2.UndefinedError("undefined value passed to tojson")
    _check_no_floats(value)
    text = json.dumps(value, ensure_ascii=False, allow_nan=False)
    return YamlValue(_NEEDS_ESCAPE.sub(_yaml_escape, text))


def _only_tojson(value: Any) -> Any:
    if isinstance(value, YamlValue):
        return value
    raise TypeError(f"template inserted {value!r} without `| tojson`")


@functools.cache
def environment() -> jinja2.Environment:
    """The shared, immutable environment: StrictUndefined, templates from the package."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("deepseek_operator.render", "templates"),
        auto_reload=False,  # package data never changes under a running process
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        finalize=_only_tojson,
    )
    env.filters["tojson"] = tojson
    return env


def render_text(template: str, **context: Any) -> str:
    """The text of `template` (a name under templates/) rendered with `context`.

    Raises jinja2.UndefinedError when the template uses a name `context` lacks.
    """
    return environment().get_template(template).render(**context)


def render_manifest(template: str, **context: Any) -> dict[str, Any]:
    """Render `template` and parse it as one YAML mapping (a Kubernetes manifest)."""
    obj = yaml.load(render_text(template, **context), Loader=_SAFE_LOADER)
    if not isinstance(obj, dict):
        raise TypeError(f"template {template} did not produce a mapping")
    return obj
