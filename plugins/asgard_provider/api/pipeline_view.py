"""What the Asgard page of a pipeline shows, read from the engines: tables, models, drift and predictions.

No Airflow here: the pipeline's YAML says which tables, model and prediction table it has; Iceberg gives row
counts and snapshots, MLflow the promotion history, the monitoring table the drift, the prediction table the
distribution of the predicted probability on the latest scored date.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from asgard_provider.api.promotions import PromotionHistory, promotion_history
from asgard_provider.exceptions import ModelNotFoundError, PipelineNotFoundError

#: Bins of the prediction histogram over [0, 1].
HISTOGRAM_BINS = 10


@dataclass(frozen=True)
class TableState:
    """One table a stage writes: its rows and last snapshot, or ``exists=False``."""

    stage: str
    name: str
    exists: bool
    rows: int | None = None
    snapshot_id: int | None = None
    committed_at: str | None = None
    operation: str | None = None


@dataclass(frozen=True)
class Predictions:
    """The latest scored date: drift per feature and of the prediction, and the prediction histogram."""

    table: str
    as_of_date: str | None = None
    drift: list[dict[str, Any]] = field(default_factory=list)
    prediction: dict[str, Any] | None = None
    histogram: list[tuple[float, float, int]] = field(default_factory=list)


@dataclass(frozen=True)
class ModelSection:
    """One registered model of the pipeline: its promotion history and the predictions it writes."""

    name: str
    history: PromotionHistory | None
    predictions: Predictions | None


@dataclass(frozen=True)
class PipelinePage:
    """Everything the page of one pipeline shows (a section per model: several with ``train.partition``)."""

    pipeline: str
    description: str
    tables: list[TableState]
    feature_views: list[dict[str, Any]]
    models: list[ModelSection]
    problems: list[str]


def pipeline_page(pipeline: str, base: Path | None = None, mlflow_conn_id: str | None = None) -> PipelinePage:
    """Read the page of ``pipeline`` (``include/pipelines/<pipeline>.yaml``)."""
    from asgard_provider.pipeline.config import load_pipeline_config
    from asgard_provider.pipeline.graph import PipelineGraph
    from asgard_provider.settings import include_dir

    base = base or include_dir()
    path = next((p for p in (base / "pipelines").glob(f"{pipeline}.y*ml") if p.stem == pipeline), None)
    if path is None:
        raise PipelineNotFoundError(f"no pipeline {pipeline!r}: no include/pipelines/{pipeline}.yaml")
    cfg = load_pipeline_config(path, base_dir=base)
    graph = PipelineGraph(cfg, base)
    tables = [_table(s["stage"], name) for s in graph.describe() for name in s["writes"] if _is_table(name)]
    problems: list[str] = []
    models = [_section(name, table, mlflow_conn_id, problems) for name, table in _models(graph.nodes)]
    views = [_view(node.config) for node in graph.nodes if node.kind.key == "features"]
    return PipelinePage(cfg.pipeline, cfg.description or "", tables, views, models, problems)


def _models(nodes: Any) -> list[tuple[str, str | None]]:
    """Return (registered model, predictions table or ``None``) of each model the pipeline trains, in order."""
    from asgard_provider.stages.predict import scored

    written = {
        one.registered_model: table
        for node in nodes
        if node.kind.key == "predict"
        for _, table, one in scored(node.config, node.inputs["train"].config)
    }
    trained = [one.registered_model for node in nodes if node.kind.key == "train" for one in node.config.models()]
    return [(name, written.get(name)) for name in trained]


def _section(name: str, table: str | None, mlflow_conn_id: str | None, problems: list[str]) -> ModelSection:
    history = None
    try:
        history = promotion_history(name, mlflow_conn_id)
    except ModelNotFoundError:
        problems.append(f"model {name!r} is not registered yet (the pipeline has not trained)")
    return ModelSection(name, history, predictions(table) if table else None)


def _is_table(name: str) -> bool:
    return "." in name and ":" not in name


def _view(stage: Any) -> dict[str, Any]:
    return {
        "name": stage.feature_view,
        "join_keys": stage.keys,
        "source_table": stage.source_table,
        "features": [f.name for f in stage.features],
    }


def _table(stage: str, name: str) -> TableState:
    from asgard_provider.assets import snapshot_summary
    from asgard_provider.hooks.iceberg import IcebergHook

    hook = IcebergHook()
    if not hook.table_exists(name):
        return TableState(stage, name, exists=False)
    table = hook.load_table(name)
    summary = snapshot_summary(table)
    current = table.current_snapshot()
    committed = datetime.fromtimestamp(current.timestamp_ms / 1000, UTC).isoformat() if current else None
    return TableState(
        stage,
        name,
        exists=True,
        rows=summary["total_records"],
        snapshot_id=summary["snapshot_id"],
        committed_at=committed,
        operation=summary.get("operation"),
    )


def predictions(output_table: str) -> Predictions:
    """Drift and the prediction histogram of the latest date in ``output_table``'s monitoring table."""
    from asgard_provider.engines.monitoring import monitoring_table
    from asgard_provider.hooks.iceberg import IcebergHook

    hook = IcebergHook()
    monitor = monitoring_table(output_table)
    if not hook.table_exists(monitor):
        return Predictions(output_table)
    rows = hook.load_table(monitor).scan().to_arrow().to_pylist()
    if not rows:
        return Predictions(output_table)
    latest = max(r["as_of_date"] for r in rows)
    today = [r for r in rows if r["as_of_date"] == latest]
    drift = sorted((r for r in today if r["kind"] == "feature"), key=lambda r: -(r["psi"] or 0.0))
    prediction = next((r for r in today if r["kind"] == "prediction"), None)
    histogram = _histogram(output_table, prediction["name"], latest) if prediction else []
    return Predictions(output_table, latest.isoformat(), drift, prediction, histogram)


def _histogram(table: str, column: str, as_of: Any) -> list[tuple[float, float, int]]:
    """Count ``column`` in :data:`HISTOGRAM_BINS` equal bins ([0, 1] for probabilities), for the rows of ``as_of``."""
    import numpy as np

    from asgard_provider.hooks.iceberg import IcebergHook

    day = f"as_of_date = '{as_of.isoformat()}'"  # a date object's ISO form: nothing to escape
    scan = IcebergHook().load_table(table).scan(row_filter=day, selected_fields=(column,))
    values = scan.to_arrow().column(column).to_numpy(zero_copy_only=False)
    values = values.astype("float64")
    values = values[~np.isnan(values)]
    # Probabilities over [0, 1]; a regression's numbers over their own range.
    low, high = (
        (0.0, 1.0) if values.size == 0 or (values.min() >= 0 and values.max() <= 1) else (values.min(), values.max())
    )
    counts, edges = np.histogram(values, bins=HISTOGRAM_BINS, range=(float(low), float(high)))
    return [(float(edges[i]), float(edges[i + 1]), int(c)) for i, c in enumerate(counts)]
