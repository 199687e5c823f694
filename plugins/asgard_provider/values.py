"""Config values are data: which fields render Jinja, with which variables, and which ``${VAR}`` expand.

A config string with Jinja syntax is refused unless its field is declared ``templated`` (``Field(
json_schema_extra=TEMPLATED)``), and a templated field may use only :data:`TEMPLATE_VARIABLES`. Only fields
declared ``EXPANDS_ENV`` expand ``${VAR}``, and only the variables of :data:`ENV_ALLOWED`. Messages name the
key and the variable, never a value.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from typing import Any

from pydantic import BaseModel

#: ``json_schema_extra`` of a field whose strings are Jinja templates (rendered by Airflow at run time).
TEMPLATED: dict[str, Any] = {"templated": True}
#: ``json_schema_extra`` of a field whose strings expand ``${VAR}`` at run time.
EXPANDS_ENV: dict[str, Any] = {"expands_env": True}
#: Variables a templated field may use (``params.<name>`` included), with filters on them.
TEMPLATE_VARIABLES = ("ds", "data_interval_start", "data_interval_end", "logical_date", "params")
#: Filters a templated field may apply; ``attr``, ``map`` and the like would reach attributes.
TEMPLATE_FILTERS = frozenset(
    {"ds", "ds_nodash", "ts", "ts_nodash", "ts_nodash_with_tz", "default", "d", "string", "int", "float"}
    | {"lower", "upper", "trim", "replace", "tojson", "reverse", "length", "first", "last", "join", "truncate"}
)
#: Environment variables ``${VAR}`` may name: paths of the deployment, never connections or variables.
ENV_ALLOWED = ("ASGARD_HOME", "ASGARD_INCLUDE_DIR", "AIRFLOW_HOME")
_JINJA_MARKERS = ("{{", "{%", "{#")
_ENV_REF = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))")
_TEMPLATE_RULE = (
    f"templates may use only {', '.join(TEMPLATE_VARIABLES[:-1])} and params.<name>, with filters such as "
    "'| ds' (no conn, var, macros, ti, attributes or calls)"
)


def has_jinja(text: str) -> bool:
    """Whether ``text`` holds Jinja syntax (``{{``, ``{%`` or ``{#``)."""
    return any(marker in text for marker in _JINJA_MARKERS)


def env_refs(text: str) -> list[str]:
    """Names of the environment variables ``text`` refers to as ``$VAR`` or ``${VAR}``."""
    return [braced or bare for braced, bare in _ENV_REF.findall(text)]


def expand_env(text: str) -> str:
    """Expand ``${VAR}`` for :data:`ENV_ALLOWED`; raise ``ValueError`` naming any other variable (not its value)."""
    refused = [name for name in env_refs(text) if name not in ENV_ALLOWED]
    if refused:
        raise ValueError(f"${{{refused[0]}}} may not be expanded; only {', '.join(ENV_ALLOWED)} are")

    def value(match: re.Match[str]) -> str:
        return os.environ.get(match.group(1) or match.group(2), match.group(0))

    return _ENV_REF.sub(value, text)


def _root_name(node: Any) -> str | None:
    from jinja2 import nodes

    while isinstance(node, nodes.Getattr | nodes.Getitem):
        node = node.node
    return node.name if isinstance(node, nodes.Name) else None


def template_problem(text: str) -> str | None:
    """Why ``text`` is not an allowed template (parsed by Jinja, not matched by regex), or ``None``."""
    from jinja2 import TemplateSyntaxError, meta, nodes
    from jinja2.sandbox import SandboxedEnvironment

    env = SandboxedEnvironment()
    try:
        tree = env.parse(text)
    except TemplateSyntaxError as exc:
        return f"is not a valid Jinja template ({exc.message}, line {exc.lineno})"
    for filt in tree.find_all(nodes.Filter):
        if filt.name not in TEMPLATE_FILTERS:
            return f"uses the filter {filt.name!r}; allowed filters: {', '.join(sorted(TEMPLATE_FILTERS))}"
    env.filters.update({name: str for name in TEMPLATE_FILTERS - set(env.filters)})  # Airflow's, to compile
    unknown = sorted(meta.find_undeclared_variables(tree) - set(TEMPLATE_VARIABLES))
    if unknown:
        return f"uses {', '.join(unknown)}; {_TEMPLATE_RULE}"
    for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
        attr = getattr(node, "attr", "")
        if _root_name(node) != "params" or str(attr).startswith("_"):
            return f"reads an attribute or item of something other than params; {_TEMPLATE_RULE}"
    unsafe = (nodes.Call, nodes.Include, nodes.Import, nodes.FromImport, nodes.Extends)
    if next(iter(tree.find_all(unsafe)), None) is not None:
        return f"calls a function or loads a template; {_TEMPLATE_RULE}"
    return None


Flags = frozenset[str]


def config_strings(value: Any, key: str = "", flags: Flags = frozenset()) -> Iterator[tuple[str, str, Flags]]:
    """Yield every string of a validated config (keys included) with its key path and its field's flags."""
    if isinstance(value, BaseModel):
        for name, field in type(value).model_fields.items():
            extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
            own = flags | {flag for flag in ("templated", "expands_env") if extra.get(flag)}
            yield from config_strings(getattr(value, name), f"{key}.{name}" if key else name, own)
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from config_strings(k, f"{key} (key {k!r})", frozenset())
            yield from config_strings(v, f"{key}.{k}", flags)
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            yield from config_strings(item, f"{key}[{i}]", flags)
    elif isinstance(value, str):
        yield key, value, flags


def _problem(key: str, text: str, flags: Flags) -> str | None:
    if has_jinja(text) and "templated" not in flags:
        return (
            f"{key}: Jinja syntax ('{{{{', '{{%', '{{#') is not allowed here; config values are data and only "
            "fields marked templated in docs/config.md (such as dbt.vars) are rendered"
        )
    reason = template_problem(text) if has_jinja(text) else None
    if reason:
        return f"{key}: the template {reason}"
    refused = [name for name in env_refs(text) if name not in ENV_ALLOWED] if "expands_env" in flags else []
    if refused:
        return f"{key}: ${{{refused[0]}}} may not be expanded; only {', '.join(ENV_ALLOWED)} are (see docs/config.md)"
    return None


def value_problems(cfg: BaseModel) -> list[str]:
    """Every config string that would render Jinja or expand a variable it may not; each names its key."""
    found = (_problem(key, text, flags) for key, text, flags in config_strings(cfg))
    return [problem for problem in found if problem]


def literal_strings(cfg: BaseModel) -> set[str]:
    """Config strings with Jinja syntax outside templated fields: the factory keeps Airflow from rendering them."""
    return {text for _, text, flags in config_strings(cfg) if has_jinja(text) and "templated" not in flags}
