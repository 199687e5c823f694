"""Check the columns stages read against the columns their writers declare (dbt model contracts, manifests).

Each :class:`~asgard_provider.stages.base.ColumnUse` names a column a stage reads, each writer's
``StageKind.columns`` what a table it writes holds; the pipeline graph pairs them before any run. A table
whose writer declares nothing (a Spark SQL transform's Silver table) is not checked.
"""

from __future__ import annotations

import re

from asgard_provider.stages.base import ColumnUse, TableColumns

#: SQL type families (the type name before any ``(``, lowercased) each feature dtype accepts.
_INTEGER = {"tinyint", "smallint", "integer", "int", "bigint", "hugeint", "int2", "int4", "int8", "int16", "int32"}
_INTEGER |= {"int64", "long", "utinyint", "usmallint", "uinteger", "ubigint"}
_FLOAT = {"float", "float4", "float8", "real", "double", "double precision", "decimal", "numeric", "float32"}
_FLOAT |= {"float64"} | _INTEGER
_TIMESTAMP = {"timestamp", "timestamptz", "timestamp with time zone", "timestamp without time zone", "datetime"}
DTYPE_SQL_TYPES: dict[str, frozenset[str]] = {
    "int32": frozenset(_INTEGER),
    "int64": frozenset(_INTEGER),
    "float32": frozenset(_FLOAT),
    "float64": frozenset(_FLOAT),
    "string": frozenset({"varchar", "text", "string", "char", "character varying", "character", "bpchar"}),
    "bool": frozenset({"boolean", "bool"}),
    "unix_timestamp": frozenset(_TIMESTAMP | {"date"}),
}


def _family(sql_type: str) -> str:
    """``DECIMAL(10, 2)`` -> ``decimal``; ``Nullable(Int64)`` is not a dbt data_type, so no unwrapping."""
    return re.sub(r"\s+", " ", sql_type.split("(")[0]).strip().lower()


def column_problems(use: ColumnUse, declared: TableColumns) -> list[str]:
    """Problems of one column use against the writer's declared columns (none declared: nothing to check)."""
    if not declared.columns:
        return []
    existing = ", ".join(declared.columns)
    if use.column not in declared.columns:
        return [
            f"{use.key}: {use.column!r} is not a column of {use.table}; its columns ({declared.source}): {existing}"
        ]
    sql_type = declared.columns[use.column]
    if use.dtype is None or not sql_type:
        return []
    if _family(sql_type) not in DTYPE_SQL_TYPES[use.dtype]:
        dtype_key = use.key.removesuffix(".name") + ".dtype"
        return [
            f"{dtype_key}: {use.dtype} does not fit column {use.column!r} of {use.table}, declared {sql_type} "
            f"({declared.source}); change the dtype or the model's data_type"
        ]
    return []


def undeclared_warning(table: str, declared: TableColumns, keys: list[str]) -> str:
    """Warn that a table's writer declares no columns: say what is not checked, and the fix."""
    return (
        f"{', '.join(keys)}: not checked: {table} has no declared columns ({declared.source}); document every "
        "column under the model's columns: (or add a contract) in its schema YAML"
    )
