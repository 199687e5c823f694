from __future__ import annotations

import json
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from asgard_provider.engines.feature_batches import ViewSource, view_sources
from asgard_provider.exceptions import InferenceError
from asgard_provider.hooks.feast import FeastHook
from asgard_provider.hooks.iceberg import IcebergHook
from asgard_provider.hooks.mlflow import MLflowHook
from asgard_provider.operators.inference import BatchInferenceOperator, risk_levels

from ..conftest import (
    AS_OF,
    FEATURE_REFS,
    FEATURE_VIEW,
    FEATURES,
    PRIOR,
    run_context,
    snapshot_time,
    train_operator,
)

MODEL = "customer_churn_predictor"
OUTPUT = "gold.customer_churn_predictions"


@pytest.fixture(scope="module")
def trained(ml_home: Path) -> dict[str, Any]:
    return train_operator().execute(run_context())


def _operator(**overrides: Any) -> BatchInferenceOperator:
    kwargs: dict[str, Any] = {
        "task_id": "batch_inference",
        "model_name": MODEL,
        "model_alias": "champion",
        "feature_refs": FEATURE_REFS,
        "entity_table": "gold.customer_metrics",
        "entity_key": "customer_id",
        "timestamp_field": "feature_timestamp",
        "as_of": AS_OF.isoformat(),
        "output_table": OUTPUT,
        "thresholds": {"high": 0.7, "medium": 0.4},
        "prediction_column": "churn_probability",
        "batch_size": 700,
    }
    kwargs.update(overrides)
    return BatchInferenceOperator(**kwargs)


def _predictions(day: date | None = None) -> pa.Table:
    data = IcebergHook().load_table(OUTPUT).scan().to_arrow()
    return data if day is None else data.filter(pc.equal(data["as_of_date"], pa.scalar(day, pa.date32())))


def test_every_customer_of_the_snapshot_is_scored_once(trained: dict[str, Any]) -> None:
    result = _operator().execute(run_context())
    assert result["rows"] == 2000
    assert result["model_version"] == trained["model_version"]
    assert result["table"] == OUTPUT

    data = _predictions()
    assert data.num_rows == 2000
    ids = data["customer_id"].to_pylist()
    assert len(set(ids)) == 2000 and set(ids) == set(range(1001, 3001))
    assert data.schema.names == [
        "customer_id",
        "churn_probability",
        "prediction",
        "risk_level",
        "model_name",
        "model_version",
        "scored_at",
        "as_of_date",
    ]
    rows = data.to_pylist()
    assert {r["as_of_date"] for r in rows} == {AS_OF}
    assert {r["model_name"] for r in rows} == {MODEL}
    assert {r["model_version"] for r in rows} == {trained["model_version"]}
    for r in rows:
        assert 0.0 <= r["churn_probability"] <= 1.0
        assert r["prediction"] == int(r["churn_probability"] >= 0.5)
        assert r["risk_level"] == risk_levels([r["churn_probability"]], 0.7, 0.4)[0]
    assert {r["risk_level"] for r in rows} == {"low", "medium", "high"}
    spec = IcebergHook().load_table(OUTPUT).spec()
    assert [f.name for f in spec.fields] == ["as_of_date_part"]


def test_scores_match_the_model_on_the_snapshot_rows(trained: dict[str, Any]) -> None:
    """No training/serving skew: the written score is the model applied to that customer's AS_OF row."""
    _operator().execute(run_context())
    gold = IcebergHook().load_table("gold.customer_metrics").scan().to_pandas()
    snapshot = gold[gold["feature_timestamp"] == snapshot_time(AS_OF)].sort_values("customer_id")
    model = MLflowHook().load_sklearn_model(MODEL, trained["model_version"])
    columns = [f["name"] for f in FEATURES]
    expected = model.predict_proba(snapshot[columns].astype("float64"))[:, 1]
    written = _predictions(AS_OF).to_pandas().sort_values("customer_id")["churn_probability"].to_numpy()
    np.testing.assert_allclose(written, expected)


def test_rerun_replaces_only_its_own_date(trained: dict[str, Any]) -> None:
    first = _operator().execute(run_context())
    _operator(as_of=PRIOR.isoformat()).execute(run_context(day=PRIOR))
    again = _operator().execute(run_context())
    assert again["rows"] == first["rows"] == 2000
    assert again["snapshot_id"] != first["snapshot_id"]
    assert _predictions(AS_OF).num_rows == 2000
    assert _predictions(PRIOR).num_rows == 2000
    assert _predictions().num_rows == 4000


def test_pinned_version_is_used(trained: dict[str, Any]) -> None:
    result = _operator(model_version=trained["model_version"], model_alias="does_not_matter").execute(run_context())
    assert result["model_version"] == trained["model_version"]


def test_latest_scope_scores_each_entity_s_latest_row_up_to_the_date(trained: dict[str, Any]) -> None:
    """A day without a new snapshot scores every entity's latest earlier row; a date before any row fails."""
    later = date(2025, 11, 12)
    result = _operator(as_of=later.isoformat()).execute(run_context(day=later))
    assert result["rows"] == 2000 and result["scope"] == "latest"
    gold = IcebergHook().load_table("gold.customer_metrics").scan().to_pandas()
    snapshot = gold[gold["feature_timestamp"] == snapshot_time(AS_OF)].sort_values("customer_id")
    model = MLflowHook().load_sklearn_model(MODEL, trained["model_version"])
    expected = model.predict_proba(snapshot[[f["name"] for f in FEATURES]].astype("float64"))[:, 1]
    written = _predictions(later).to_pandas().sort_values("customer_id")["churn_probability"].to_numpy()
    np.testing.assert_allclose(written, expected)
    with pytest.raises(
        InferenceError, match=r"gold\.customer_metrics: no rows with feature_timestamp on or before 2025-01-01"
    ):
        _operator(as_of="2025-01-01").execute(run_context())


def test_missing_alias_names_the_model(trained: dict[str, Any]) -> None:
    with pytest.raises(InferenceError, match=r"'customer_churn_predictor' has no alias @gold"):
        _operator(model_alias="gold").execute(run_context())


def test_features_the_model_needs_must_be_requested(trained: dict[str, Any]) -> None:
    with pytest.raises(InferenceError, match="avg_support_resolution_hours"):
        _operator(feature_refs=FEATURE_REFS[:-1]).execute(run_context())


def test_thresholds_must_be_ordered() -> None:
    with pytest.raises(InferenceError, match="0 < medium < high < 1"):
        _operator(thresholds={"high": 0.3, "medium": 0.6}).execute(run_context())


MONITORING = f"{OUTPUT}_monitoring"


def _reference_profiles(run_id: str) -> dict[str, Any]:
    import json
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = MLflowHook().client().download_artifacts(run_id, "asgard/reference_profile.json", tmp)
        return json.loads(Path(path).read_text())


def _psi_by_hand(edges: list[float], shares: list[float], values: np.ndarray) -> float:
    """PSI written out without the provider's helpers: bins (-inf, e0], (e0, e1], ..., (e_last, inf), missing."""
    counts = [0] * (len(edges) + 2)
    for v in values:
        if v != v:
            counts[-1] += 1
            continue
        i = 0
        while i < len(edges) and v > edges[i]:
            i += 1
        counts[i] += 1
    total = sum(counts)
    result = 0.0
    for count, expected in zip(counts, shares, strict=True):
        actual, expected = max(count / total, 1e-4), max(expected, 1e-4)
        result += (actual - expected) * np.log(actual / expected)
    return result


def test_monitoring_row_per_feature_and_prediction_replaced_per_date(trained: dict[str, Any]) -> None:
    first = _operator().execute(run_context())
    result = _operator().execute(run_context())
    monitoring = result["monitoring"]
    assert monitoring["table"] == MONITORING
    assert monitoring["reference_run_id"] == trained["run_id"]
    assert set(monitoring["psi"]) == {f["name"] for f in FEATURES}
    # Both fixture snapshots are drawn from the same distributions: no feature may count as drifted.
    assert monitoring["drifted_features"] == []
    assert all(0 <= v < 0.1 for v in monitoring["psi"].values()), monitoring["psi"]
    assert monitoring["snapshot_id"] != first["monitoring"]["snapshot_id"]

    data = IcebergHook().load_table(MONITORING).scan().to_arrow()
    rows = data.filter(pc.equal(data["as_of_date"], pa.scalar(AS_OF, pa.date32()))).to_pylist()
    assert len(rows) == len(FEATURES) + 1, "the rerun replaced the date's rows instead of adding to them"
    by_name = {r["name"]: r for r in rows}
    prediction = by_name.pop("churn_probability")
    assert prediction["kind"] == "prediction" and prediction["rows"] == 2000
    written = _predictions(AS_OF).to_pandas()
    assert prediction["mean"] == pytest.approx(written["churn_probability"].mean())
    assert prediction["positive_rate"] == pytest.approx(written["prediction"].mean())
    assert prediction["share_high"] == pytest.approx((written["risk_level"] == "high").mean())
    assert prediction["psi"] is not None and result["monitoring"]["prediction"]["psi"] == prediction["psi"]

    reference = _reference_profiles(trained["run_id"])["features"]
    gold = IcebergHook().load_table("gold.customer_metrics").scan().to_pandas()
    snapshot = gold[gold["feature_timestamp"] == snapshot_time(AS_OF)]
    for name, row in by_name.items():
        values = snapshot[name].astype("float64").to_numpy()
        assert row["kind"] == "feature" and row["model_version"] == trained["model_version"]
        assert row["mean"] == pytest.approx(values.mean())
        assert row["psi"] == pytest.approx(_psi_by_hand(reference[name]["edges"], reference[name]["shares"], values))
        assert row["drifted"] is False


def test_large_drift_is_flagged_in_log_table_and_asset_event(asgard_home: Path) -> None:
    from airflow.sdk.execution_time.context import OutletEventAccessors
    from structlog.testing import capture_logs

    from asgard_provider.assets import table_asset

    from ..conftest import customer_metrics, register_operator, write_customer_metrics

    data = customer_metrics()
    shifted = data.to_pandas()
    later = shifted["feature_timestamp"] == snapshot_time(AS_OF)
    shifted.loc[later, "days_since_last_purchase"] = shifted.loc[later, "days_since_last_purchase"] * 4 + 30
    write_customer_metrics(pa.Table.from_pandas(shifted, schema=data.schema, preserve_index=False))
    register_operator(materialize=False).execute(run_context())
    train_operator().execute(run_context())

    op = _operator()
    op.outlets = [table_asset(OUTPUT)]
    events = OutletEventAccessors()
    context = {**run_context(), "task": op, "outlet_events": events}
    with capture_logs() as logs:  # task loggers are structlog loggers
        result = op.execute(context)  # type: ignore[arg-type]

    monitoring = result["monitoring"]
    assert monitoring["drifted_features"] == ["days_since_last_purchase"]
    assert monitoring["psi"]["days_since_last_purchase"] > 0.2
    assert monitoring["max_feature_psi"] == monitoring["psi"]["days_since_last_purchase"]
    warnings = [e["event"] for e in logs if e["log_level"] == "warning" and "DRIFT" in e["event"]]
    assert len(warnings) == 2, warnings
    assert warnings[0].startswith("DRIFT: feature days_since_last_purchase on 2025-11-11 has PSI")
    # Recency drives churn in the fixture, so the predicted probabilities shift with it.
    assert warnings[1].startswith("DRIFT: predicted churn_probability on 2025-11-11 has PSI")
    assert monitoring["prediction"]["psi"] > 0.2
    extra = events[table_asset(OUTPUT)].extra
    assert extra["drifted_features"] == ["days_since_last_purchase"]
    assert extra["drift_max_psi"] == pytest.approx(monitoring["psi"]["days_since_last_purchase"])
    assert extra["monitoring_table"] == MONITORING
    assert extra["snapshot_id"] == result["snapshot_id"]
    table = IcebergHook().load_table(MONITORING).scan().to_pandas().set_index("name")
    assert bool(table.loc["days_since_last_purchase", "drifted"]) is True
    assert not table.drop(index=["days_since_last_purchase", "churn_probability"])["drifted"].any()


def test_predictions_and_monitoring_are_published_from_the_run_branch(trained: dict[str, Any]) -> None:
    from asgard_provider.engines import wap

    result = _operator().execute(run_context(run_id="scheduled__wap"))
    where = f"as_of_date == '{AS_OF.isoformat()}'"
    for name, snapshot_id in ((OUTPUT, result["snapshot_id"]), (MONITORING, result["monitoring"]["snapshot_id"])):
        table = IcebergHook().load_table(name)
        assert table.refs().keys() == {"main"} and table.current_snapshot().snapshot_id == snapshot_id
        ours = [
            s for s in table.snapshots() if s.summary.additional_properties.get(wap.RUN_PROPERTY) == "scheduled__wap"
        ]
        assert {s.summary.additional_properties.get(wap.REPLACE_PROPERTY) for s in ours} == {where}


def test_a_failed_monitoring_write_publishes_neither_table(trained: dict[str, Any]) -> None:
    from asgard_provider.engines import wap

    output = "gold.wap_predictions"
    monitoring = f"{output}_monitoring"
    IcebergHook().write(monitoring, [pa.table({"name": pa.array([1], pa.int64())})])  # 'name' holds text in stats
    with pytest.raises(InferenceError, match=f"writing monitoring stats to {monitoring} failed"):
        _operator(output_table=output).execute(run_context(run_id="scheduled__bad"))
    table = IcebergHook().load_table(output)
    assert table.scan().to_arrow().num_rows == 0  # main: the empty table the branch started from
    branch = wap.branch_snapshot(table, wap.run_branch("scheduled__bad"))
    assert branch is not None and table.scan(snapshot_id=branch).to_arrow().num_rows == 2000  # kept to inspect


def test_batches_of_three_write_the_predictions_of_one_batch(trained: dict[str, Any]) -> None:
    """Features are joined and scored batch by batch: 10 rows in batches of 3 give the rows of one batch of 10."""

    def scored(batch_size: int) -> list[dict[str, Any]]:
        result = _operator(batch_size=batch_size, row_filter="customer_id < 1011").execute(run_context())
        assert result["rows"] == 10
        rows = _predictions(AS_OF).drop_columns(["scored_at"]).to_pylist()
        return sorted(rows, key=lambda r: r["customer_id"])

    in_threes, at_once = scored(3), scored(10)
    assert [r["customer_id"] for r in in_threes] == list(range(1001, 1011))
    # The forest averages its trees' probabilities in thread order: equal up to the last bits.
    probability = [r.pop("churn_probability") for r in in_threes]
    assert probability == pytest.approx([r.pop("churn_probability") for r in at_once], rel=1e-12)
    assert in_threes == at_once


def _described(**changes: Any) -> list[dict[str, Any]]:
    """The churn view as the factory describes it from config (what ``register_operator()`` registered)."""
    names = tuple(f["name"] for f in FEATURES)
    keys = ("customer_id",)
    view = ViewSource(FEATURE_VIEW, "gold.customer_metrics", keys, "feature_timestamp", timedelta(days=90), names)
    return [{**view.to_dict(), **changes}]


def _scored(table: str) -> list[dict[str, Any]]:
    rows = IcebergHook().load_table(table).scan().to_arrow().drop_columns(["scored_at"]).to_pylist()
    return sorted(rows, key=lambda r: r["customer_id"])


def test_described_views_score_as_the_registry_s(trained: dict[str, Any]) -> None:
    """The views described from config are the registered ones, and score the same rows the same way."""
    assert [ViewSource.from_dict(v) for v in _described()] == view_sources(FeastHook().store, FEATURE_REFS)
    registry = _operator(output_table="gold.registry_predictions").execute(run_context())
    described = _operator(output_table="gold.described_predictions", feature_views=_described()).execute(run_context())
    assert described["rows"] == registry["rows"] == 2000
    assert described["monitoring"]["psi"] == pytest.approx(registry["monitoring"]["psi"])
    by_registry, by_description = _scored("gold.registry_predictions"), _scored("gold.described_predictions")
    # The forest averages its trees' probabilities in thread order: equal up to the last bits.
    probability = [r.pop("churn_probability") for r in by_description]
    assert probability == pytest.approx([r.pop("churn_probability") for r in by_registry], rel=1e-12)
    assert by_description == by_registry


def test_a_bad_view_description_is_refused_naming_the_view(trained: dict[str, Any]) -> None:
    no_table = {k: v for k, v in _described()[0].items() if k != "table"}
    with pytest.raises(InferenceError, match=r"invalid feature view description .*customer_churn_features.*'table'"):
        _operator(feature_views=[no_table]).execute(run_context())
    with pytest.raises(InferenceError, match=r"view 'customer_churn_features' is not among the described views \(x\)"):
        _operator(feature_views=_described(name="x")).execute(run_context())
    fewer = [f["name"] for f in FEATURES if f["name"] != "support_tickets"]
    with pytest.raises(InferenceError, match=r"'customer_churn_features:support_tickets'.*has no feature"):
        _operator(feature_views=_described(features=fewer)).execute(run_context())
    with pytest.raises(InferenceError, match=r"view 'customer_churn_features': cannot read .* gold\.missing"):
        _operator(feature_views=_described(table="gold.missing")).execute(run_context())


def test_batch_inference_with_described_views_does_not_import_feast(trained: dict[str, Any]) -> None:
    """The task process scores without paying for Feast's import (typeguard-instrumented classes)."""
    kwargs = {"output_table": "gold.featureless_predictions", "feature_views": _described()}
    code = (
        "import json, sys\n"
        "from tests.asgard_provider.conftest import run_context\n"
        "from tests.asgard_provider.operators.test_inference import _operator\n"
        f"result = _operator(**json.loads({json.dumps(kwargs)!r})).execute(run_context())\n"
        "print(result['rows'], sorted(m for m in sys.modules if m == 'feast' or m.startswith('feast.')))\n"
    )
    root = Path(__file__).resolve().parents[3]
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False, cwd=root
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.splitlines()[-1] == "2000 []"
