"""Iceberg tables, Feast feature views and registered models as Airflow Assets.

One asset per table (each commit's snapshot in the asset event), per feature view and per registered model, so the
asset graph reads tables -> feature view -> model -> predictions.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import Asset, Context

from asgard_provider.catalog import CATALOG_NAME, split_table_name

#: Asset group shown in the Airflow UI for every Iceberg table.
ASSET_GROUP = "iceberg"

#: Asset groups of feature views, registered models and exported file sets.
FEATURES_GROUP = "feast"
MODELS_GROUP = "mlflow"
EXPORTS_GROUP = "exports"


def table_asset(name: str) -> Asset:
    """Return the Asset of Iceberg table ``namespace.table`` (URI ``iceberg://iceberg/<namespace>/<table>``)."""
    namespace, table = split_table_name(name)
    return Asset(name=f"{namespace}.{table}", uri=f"iceberg://{CATALOG_NAME}/{namespace}/{table}", group=ASSET_GROUP)


def feature_view_asset(view: str) -> Asset:
    """Return the Asset of Feast feature view ``view`` (URI ``feast://feature-view/<view>``)."""
    return Asset(name=f"feature_view:{view}", uri=f"feast://feature-view/{view}", group=FEATURES_GROUP)


def model_asset(name: str) -> Asset:
    """Return the Asset of registered model ``name`` (URI ``mlflow://registered-model/<name>``)."""
    return Asset(name=f"model:{name}", uri=f"mlflow://registered-model/{name}", group=MODELS_GROUP)


def files_asset(name: str, uri: str) -> Asset:
    """Return the Asset of a file set exported for consumers outside the catalog (URI ``s3://...``, ``file://...``)."""
    return Asset(name=name, uri=uri, group=EXPORTS_GROUP)


def publish(context: Context, table: str, **extra: Any) -> None:
    """Attach ``extra`` (snapshot id, row counts, ...) to the asset event the running task emits for ``table``.

    Only tables among the task's ``outlets`` produce events; for others this is a no-op.
    """
    publish_asset(context, table_asset(table), **extra)


def publish_asset(context: Context, asset: Asset, **extra: Any) -> None:
    """Attach ``extra`` to the event the running task emits for ``asset``; a no-op unless it is an outlet."""
    task = context.get("task")
    outlets = getattr(task, "outlets", None) or []
    if asset not in outlets:
        return
    events = context.get("outlet_events")
    if events is None:
        return
    events[asset].extra.update({k: v for k, v in extra.items() if v is not None})


def snapshot_summary(table: Any, snapshot_id: int | None = None) -> dict[str, Any]:
    """Snapshot id, total rows and rows added by a snapshot of a pyiceberg table (default: the current one)."""
    snapshot = table.current_snapshot() if snapshot_id is None else table.snapshot_by_id(snapshot_id)
    if snapshot is None:
        return {"snapshot_id": None, "total_records": 0}
    props = snapshot.summary.additional_properties if snapshot.summary else {}
    return {
        "snapshot_id": snapshot.snapshot_id,
        "total_records": int(props.get("total-records", 0)),
        "added_records": int(props.get("added-records", 0)),
        "deleted_records": int(props.get("deleted-records", 0)),
        "operation": str(snapshot.summary.operation.value) if snapshot.summary else None,
    }
