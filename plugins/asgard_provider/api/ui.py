"""The Asgard page of a pipeline: server-rendered HTML, shown by the Airflow UI as the DAG's "Asgard" tab.

The plugin registers ``/asgard/ui/pipelines/{DAG_ID}`` as an external view with destination ``dag``; the UI
embeds it in an iframe, whose request carries the UI's session cookie, so Airflow's DAG read access applies.
The page needs no script: tables, promotion history, drift and a histogram drawn with CSS.
"""

from __future__ import annotations

from html import escape
from typing import Any

from fastapi import APIRouter, Depends
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse

from asgard_provider.api.pipeline_view import ModelSection, PipelinePage, Predictions, TableState, pipeline_page
from asgard_provider.api.plugin import PAGE_ROUTE
from asgard_provider.api.promotions import PromotionHistory
from asgard_provider.exceptions import PipelineNotFoundError

#: Run metrics shown per model version, when logged.
SHOWN_METRICS = ("roc_auc", "accuracy", "precision", "recall", "f1", "log_loss")

_STYLE = """
body{font-family:system-ui,sans-serif;margin:1rem 1.5rem;color:#1a202c}h1{font-size:1.4rem}h2{font-size:1.1rem;
margin-top:1.6rem}table{border-collapse:collapse;font-size:.85rem}td,th{border:1px solid #cbd5e0;padding:.25rem .5rem;
text-align:left;vertical-align:top}th{background:#edf2f7}.num{text-align:right;font-variant-numeric:tabular-nums}
.yes{color:#276749;font-weight:600}.no{color:#9b2c2c;font-weight:600}.muted{color:#718096}
.bar{background:#4299e1;height:.9rem;display:inline-block}.warn{color:#9b2c2c}
"""


def router(auth: bool, mlflow_conn_id: str | None = None) -> APIRouter:
    """Route the pipeline page (not in the OpenAPI spec: it is HTML for people)."""
    deps: list[Any] = []
    if auth:
        from airflow.api_fastapi.core_api.security import requires_access_dag

        deps = [Depends(requires_access_dag("GET"))]
    api = APIRouter(include_in_schema=False)

    @api.get(PAGE_ROUTE, response_class=HTMLResponse, dependencies=deps)
    def page(dag_id: str = PathParam(max_length=250)) -> HTMLResponse:
        """Render the page of ``dag_id``; 404 with a short page when it is not an Asgard pipeline."""
        try:
            data = pipeline_page(dag_id, mlflow_conn_id=mlflow_conn_id)
        except PipelineNotFoundError as exc:
            return HTMLResponse(_document(dag_id, f"<p>{escape(str(exc))}</p>"), status_code=404)
        return HTMLResponse(render(data))

    return api


def render(data: PipelinePage) -> str:
    """Return the whole HTML document of one pipeline's page."""
    parts = [
        f"<p class=muted>{escape(data.description)}</p>",
        "".join(f"<p class=warn>{escape(p)}</p>" for p in data.problems),
        "<h2>Tables</h2>",
        _tables(data.tables),
        "<h2>Feature views</h2>",
        _views(data.feature_views),
        *(_section(model, i) for i, model in enumerate(data.models)),
    ]
    return _document(data.pipeline, "".join(parts))


def _document(title: str, body: str) -> str:
    return (
        f"<!doctype html><html><head><meta charset=utf-8><title>Asgard: {escape(title)}</title>"
        f"<style>{_STYLE}</style></head><body><h1>Asgard pipeline {escape(title)}</h1>{body}</body></html>"
    )


def _table(headers: list[str], rows: list[list[str]], id_: str) -> str:
    """Return an HTML table; the cells are already escaped HTML."""
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(row) + "</tr>" for row in rows)
    return f"<table id={id_}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _td(value: Any, css: str = "") -> str:
    text = "" if value is None else (f"{value:.4f}" if isinstance(value, float) else str(value))
    cls = f" class={css}" if css else ""
    return f"<td{cls}>{escape(text)}</td>"


def _tables(tables: list[TableState]) -> str:
    rows = [
        [
            _td(t.stage),
            _td(t.name),
            _td(t.rows, "num"),
            _td(t.snapshot_id, "num"),
            _td(t.committed_at),
            _td(t.operation),
        ]
        if t.exists
        else [_td(t.stage), _td(t.name), _td("not written yet", "muted"), _td(""), _td(""), _td("")]
        for t in tables
    ]
    return _table(["stage", "table", "rows", "snapshot", "committed at", "operation"], rows, "tables")


def _views(views: list[dict[str, Any]]) -> str:
    rows = [
        [_td(v["name"]), _td(", ".join(v["join_keys"])), _td(v["source_table"]), _td(", ".join(v["features"]))]
        for v in views
    ]
    return _table(["feature view", "entity keys", "source table", "features"], rows, "feature-views")


def _section(model: ModelSection, index: int) -> str:
    """One model's history and predictions; element ids get ``-<n>`` after the first model (unique in the page)."""
    suffix = f"-{index + 1}" if index else ""
    return (
        f"<section id=model{suffix}><h2>Model {escape(model.name)}</h2>"
        + _models(model.history, suffix)
        + _predictions(model.predictions, suffix)
        + "</section>"
    )


def _models(history: PromotionHistory | None, suffix: str = "") -> str:
    if history is None:
        return "<p class=muted>No registered versions.</p>"
    metrics = [m for m in SHOWN_METRICS if any(m in e.metrics for e in history.history)]
    rows = []
    for event in reversed(history.history):
        promoted = {True: _td("yes", "yes"), False: _td("no", "no"), None: _td("?")}[event.promoted]
        holdout = "; ".join(
            f"{h.metric} {h.new:.4f}" + (f" vs champion {h.champion:.4f}" if h.champion is not None else "")
            for h in event.holdout
        )
        rows.append(
            [_td(event.version), _td(", ".join(event.aliases)), promoted]
            + [_td(event.metrics.get(m), "num") for m in metrics]
            + [_td(holdout), _td(event.compared_with_version), _td(event.reason), _td(event.created_at)]
        )
    headers = ["version", "aliases", "promoted", *metrics, "holdout", "compared with", "why", "registered at"]
    summary = (
        f"<p>champion: <b>{escape(history.champion or '-')}</b>, challenger: {escape(history.challenger or '-')}</p>"
    )
    return summary + _table(headers, rows, f"models{suffix}")


def _predictions(pred: Predictions | None, suffix: str = "") -> str:
    if pred is None:
        return ""
    title = f"<h2>Predictions {escape(pred.table)}</h2>"
    if pred.as_of_date is None:
        return title + "<p class=muted>No batch inference has run yet.</p>"
    drift_rows = [
        [_td(r["name"]), _td(r["psi"], "num"), _yes_no(r["drifted"], bad=True), *_stats(r)] for r in pred.drift
    ]
    headers = ["feature", "PSI", "drifted", "mean", "training mean", "null rate"]
    drift = _table(headers, drift_rows, f"drift{suffix}")
    return (
        title
        + f"<p>scored date {escape(pred.as_of_date)}</p>"
        + _prediction_summary(pred.prediction, suffix)
        + "<h2>Prediction distribution</h2>"
        + _histogram(pred.histogram, suffix)
        + "<h2>Drift per feature</h2>"
        + drift
    )


def _yes_no(value: bool, *, bad: bool = False) -> str:
    good = value != bad
    return _td("yes" if value else "no", "yes" if good else "no")


def _stats(row: dict[str, Any]) -> list[str]:
    return [_td(row["mean"], "num"), _td(row["reference_mean"], "num"), _td(row["null_rate"], "num")]


def _prediction_summary(row: dict[str, Any] | None, suffix: str = "") -> str:
    if row is None:
        return ""
    keys = ["rows", "mean", "reference_mean", "psi", "drifted", "positive_rate", "share_high", "share_medium"]
    keys += ["share_low", "model_version"]
    return _table(keys, [[_td(row.get(k), "num") for k in keys]], f"prediction-summary{suffix}")


def _histogram(bins: list[tuple[float, float, int]], suffix: str = "") -> str:
    top = max((count for _, _, count in bins), default=0) or 1
    rows = [
        [
            _td(f"{low:.1f} - {high:.1f}"),
            _td(count, "num"),
            f"<td><span class=bar style='width:{200 * count // top}px'></span></td>",
        ]
        for low, high, count in bins
    ]
    return _table(["predicted value", "rows", ""], rows, f"histogram{suffix}")
