"""OpenLineage for Asgard operators: the Iceberg tables (and other datasets) a task read and wrote.

Operators mix in :class:`LineageMixin`, call :meth:`LineageMixin.lineage_input` /
:meth:`LineageMixin.lineage_output` while they run, and the OpenLineage provider collects the result through
``get_openlineage_facets_on_complete``. Iceberg tables carry their schema and, for outputs, the rows written.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from asgard_provider.catalog import CATALOG_NAME, split_table_name

#: OpenLineage namespace of every table in the shared Iceberg catalog.
ICEBERG_NAMESPACE = f"iceberg://{CATALOG_NAME}"


def feast_namespace(project: str) -> str:
    """OpenLineage namespace of a Feast project's feature views: ``feast://<project>``."""
    return f"feast://{project}"


def mlflow_namespace(tracking_uri: str) -> str:
    """OpenLineage namespace of an MLflow registry: ``mlflow://<host:port>``, or the store path when it has no host.

    Credentials in the URI are dropped.
    """
    parts = urlsplit(tracking_uri)
    host = parts.hostname or ""
    if host:
        return f"mlflow://{host}" + (f":{parts.port}" if parts.port else "")
    path = parts.path or tracking_uri
    return "mlflow:///" + path.lstrip("/")


def model_dataset_name(name: str, version: str | int) -> str:
    """Dataset name of one registered model version: ``models/<name>/<version>``."""
    return f"models/{name}/{version}"


def _schema_facet(table: Any = None, fields: Sequence[tuple[str, str]] | None = None) -> dict[str, Any]:
    from openlineage.client.generated.schema_dataset import SchemaDatasetFacet, SchemaDatasetFacetFields

    if fields is None:
        if table is None:
            return {}
        try:
            fields = [(f.name, str(f.field_type)) for f in table.schema().fields]
        except Exception:
            return {}
    return {"schema": SchemaDatasetFacet(fields=[SchemaDatasetFacetFields(name=n, type=t) for n, t in fields])}


class LineageMixin:
    """Collect inputs and outputs during ``execute`` and report them to OpenLineage on completion."""

    def _lineage_lists(self) -> tuple[list[Any], list[Any]]:
        if not hasattr(self, "_ol_inputs"):
            self._ol_inputs: list[Any] = []
            self._ol_outputs: list[Any] = []
        return self._ol_inputs, self._ol_outputs

    def lineage_input(
        self,
        name: str,
        *,
        namespace: str = ICEBERG_NAMESPACE,
        table: Any = None,
        fields: Sequence[tuple[str, str]] | None = None,
    ) -> None:
        """Record a dataset the task read (schema from ``table``, a pyiceberg table, or ``fields``: name, type)."""
        from openlineage.client.event_v2 import InputDataset

        inputs, _ = self._lineage_lists()
        facets = _schema_facet(table, fields)
        dataset = InputDataset(namespace=namespace, name=_name(name, namespace), facets=facets)
        if all((d.namespace, d.name) != (dataset.namespace, dataset.name) for d in inputs):
            inputs.append(dataset)

    def lineage_feature_views(self, feature_refs: Sequence[str], project: str) -> None:
        """Record the Feast feature views that refs like ``view:feature`` read, in project ``project``."""
        for view in sorted({ref.split(":", 1)[0] for ref in feature_refs}):
            self.lineage_input(view, namespace=feast_namespace(project))

    def lineage_output(
        self,
        name: str,
        *,
        namespace: str = ICEBERG_NAMESPACE,
        table: Any = None,
        rows: int | None = None,
        fields: Sequence[tuple[str, str]] | None = None,
    ) -> None:
        """Record a dataset the task wrote, with its schema (``table`` or ``fields``) and the rows written."""
        from openlineage.client.event_v2 import OutputDataset
        from openlineage.client.generated.output_statistics_output_dataset import OutputStatisticsOutputDatasetFacet

        _, outputs = self._lineage_lists()
        facets = _schema_facet(table, fields)
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
