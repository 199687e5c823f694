"""What an operator does after its engine returns: asset events, OpenLineage datasets and XCom, in one place.

Operators build :class:`Dataset` records from the engine's typed result and call :func:`publish_outcome`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from asgard_provider.assets import publish, publish_asset
from asgard_provider.lineage import ICEBERG_NAMESPACE, LineageMixin
from asgard_provider.links import push


@dataclass(frozen=True)
class Dataset:
    """A dataset a task read or wrote; its schema comes from ``fields`` or, for an Iceberg table, the catalog."""

    name: str
    namespace: str = ICEBERG_NAMESPACE
    rows: int | None = None
    fields: Sequence[tuple[str, str]] | None = None


def publish_outcome(
    op: LineageMixin | None,
    context: Any,
    *,
    read: Sequence[Dataset] = (),
    wrote: Sequence[Dataset] = (),
    events: Mapping[Any, Mapping[str, Any]] | None = None,
    iceberg: Any = None,
    xcom: Mapping[str, Any] | None = None,
) -> None:
    """Record ``read`` and ``wrote`` as lineage, emit ``events`` (table or Asset -> event extra), push ``xcom`` values.

    An event reaches Airflow only for a table among the task's outlets (see :func:`asgard_provider.assets.publish`).
    ``op`` is the operator collecting lineage (``None``: the task reports none). ``iceberg`` (an
    :class:`~asgard_provider.hooks.iceberg.IcebergHook`) supplies the schema of Iceberg tables.
    """
    if op is not None:
        _record_lineage(op, read, wrote, iceberg)
    for target, extra in (events or {}).items():
        if isinstance(target, str):
            publish(context, target, **extra)
        else:
            publish_asset(context, target, **extra)
    for key, value in (xcom or {}).items():
        push(context, key, value)


def _record_lineage(op: LineageMixin, read: Sequence[Dataset], wrote: Sequence[Dataset], iceberg: Any) -> None:
    for dataset in read:
        op.lineage_input(
            dataset.name, namespace=dataset.namespace, table=_schema_source(iceberg, dataset), fields=dataset.fields
        )
    for dataset in wrote:
        op.lineage_output(
            dataset.name,
            namespace=dataset.namespace,
            table=_schema_source(iceberg, dataset),
            rows=dataset.rows,
            fields=dataset.fields,
        )


def _schema_source(iceberg: Any, dataset: Dataset) -> Any:
    """Return the pyiceberg table behind ``dataset`` (for its schema), or ``None``."""
    if iceberg is None or dataset.fields is not None or dataset.namespace != ICEBERG_NAMESPACE:
        return None
    try:
        return iceberg.load_table(dataset.name)
    except Exception:  # lineage without a schema rather than a failed task
        return None
