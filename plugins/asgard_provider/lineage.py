"""OpenLineage for Asgard operators: the Iceberg tables (and other datasets) a task read and wrote.

Operators mix in :class:`LineageMixin`, call :meth:`LineageMixin.lineage_input` /
:meth:`LineageMixin.lineage_output` while they run, and the OpenLineage provider collects the result through
``get_openlineage_facets_on_complete``. Iceberg tables carry their schema and, for outputs, the rows written.
"""

from __future__ import annotations

from typing import Any

from asgard_provider.catalog import CATALOG_NAME, split_table_name

#: OpenLineage namespace of every table in the shared Iceberg catalog.
ICEBERG_NAMESPACE = f"iceberg://{CATALOG_NAME}"


def _schema_facet(table: Any) -> dict[str, Any]:
    from openlineage.client.generated.schema_dataset import SchemaDatasetFacet, SchemaDatasetFacetFields

    try:
        fields = [SchemaDatasetFacetFields(name=f.name, type=str(f.field_type)) for f in table.schema().fields]
    except Exception:
        return {}
    return {"schema": SchemaDatasetFacet(fields=fields)}


class LineageMixin:
    """Collect inputs and outputs during ``execute`` and report them to OpenLineage on completion."""

    def _lineage_lists(self) -> tuple[list[Any], list[Any]]:
        if not hasattr(self, "_ol_inputs"):
            self._ol_inputs: list[Any] = []
            self._ol_outputs: list[Any] = []
        return self._ol_inputs, self._ol_outputs

    def lineage_input(self, name: str, *, namespace: str = ICEBERG_NAMESPACE, table: Any = None) -> None:
        """Record a dataset the task read (``table``: the pyiceberg table, for its schema)."""
        from openlineage.client.event_v2 import InputDataset

        inputs, _ = self._lineage_lists()
        facets = _schema_facet(table) if table is not None else {}
        dataset = InputDataset(namespace=namespace, name=_name(name, namespace), facets=facets)
        if all((d.namespace, d.name) != (dataset.namespace, dataset.name) for d in inputs):
            inputs.append(dataset)

    def lineage_output(
        self, name: str, *, namespace: str = ICEBERG_NAMESPACE, table: Any = None, rows: int | None = None
    ) -> None:
        """Record a dataset the task wrote, with its schema and the rows written."""
        from openlineage.client.event_v2 import OutputDataset
        from openlineage.client.generated.output_statistics_output_dataset import OutputStatisticsOutputDatasetFacet

        _, outputs = self._lineage_lists()
        facets = _schema_facet(table) if table is not None else {}
        output_facets: dict[str, Any] = {}
        if rows is not None:
            output_facets["outputStatistics"] = OutputStatisticsOutputDatasetFacet(rowCount=rows)
        outputs.append(
            OutputDataset(namespace=namespace, name=_name(name, namespace), facets=facets, outputFacets=output_facets)
        )

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """Return what the task read and wrote (called by the OpenLineage provider after ``execute``)."""
        from airflow.providers.openlineage.extractors import OperatorLineage

        inputs, outputs = self._lineage_lists()
        return OperatorLineage(inputs=list(inputs), outputs=list(outputs))


def _name(name: str, namespace: str) -> str:
    if namespace == ICEBERG_NAMESPACE:
        return ".".join(split_table_name(name))
    return name


def sql_source_namespace(conn: Any) -> str:
    """OpenLineage namespace of a source database connection (``postgres://host:port``, ``sqlite://path``)."""
    kind = (conn.conn_type or "sql").lower()
    if kind == "sqlite":
        return f"sqlite://{conn.host}"
    port = f":{conn.port}" if conn.port else ""
    return f"{'postgres' if kind.startswith('postgres') else kind}://{conn.host}{port}"
