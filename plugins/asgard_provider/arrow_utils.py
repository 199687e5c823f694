"""Arrow helpers shared by writers: normalise batches so every engine reads them the same way."""

from __future__ import annotations

import pyarrow as pa


def normalise_schema(schema: pa.Schema) -> pa.Schema:
    """Map Arrow types Iceberg cannot store to the nearest type it can (ns→us, null→string, large_*→plain)."""
    fields = []
    for f in schema:
        t = f.type
        if pa.types.is_timestamp(t) and t.unit != "us":
            t = pa.timestamp("us", tz=t.tz)
        elif pa.types.is_null(t):
            t = pa.string()
        elif pa.types.is_large_string(t):
            t = pa.string()
        elif pa.types.is_large_binary(t):
            t = pa.binary()
        elif pa.types.is_time(t) and t != pa.time64("us"):
            t = pa.time64("us")
        elif pa.types.is_date64(t):
            t = pa.date32()
        elif pa.types.is_integer(t) and t.bit_width < 32:
            t = pa.int32()
        elif pa.types.is_unsigned_integer(t) and t.bit_width >= 32:
            t = pa.int64()
        fields.append(pa.field(f.name, t, nullable=True))
    return pa.schema(fields)


def normalise(batch: pa.RecordBatch | pa.Table) -> pa.Table:
    """Return ``batch`` as a table cast to :func:`normalise_schema`."""
    table = batch if isinstance(batch, pa.Table) else pa.Table.from_batches([batch])
    target = normalise_schema(table.schema)
    return table if table.schema == target else table.cast(target)
