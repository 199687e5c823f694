"""TrainingContext: point-in-time correct training sets, pinned label snapshots, deterministic holdout split."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from asgard_provider.engines import wap
from asgard_provider.hooks.feast import FeastHook
from asgard_provider.hooks.iceberg import IcebergHook
from asgard_provider.training import EVENT_TIMESTAMP, TrainingContext

from .conftest import (
    AS_OF,
    FEATURE_REFS,
    FEATURE_VIEW,
    FEATURES,
    PRIOR,
    customer_metrics,
    register_operator,
    run_context,
    snapshot_time,
    write_customer_metrics,
)

COLUMNS = [f["name"] for f in FEATURES]
#: Planted values no real customer has: any of them in a training row means the future leaked.
EXTREME = 10**9


def _context(**overrides: object) -> TrainingContext:
    kwargs: dict[str, object] = {
        "feast_repo_path": str(FeastHook().repo_path()),
        "features": FEATURE_REFS,
        "label_table": "gold.customer_metrics",
        "label_column": "churned",
        "entity_key": "customer_id",
        "timestamp_field": "feature_timestamp",
        "catalog": IcebergHook().settings.as_dict(),
    }
    kwargs.update(overrides)
    return TrainingContext(**kwargs)  # type: ignore[arg-type]


def _extreme(rows: pa.Table, when: pd.Timestamp | object, label: int | None) -> pa.Table:
    """Copy of ``rows`` moved to ``when`` with every feature set to EXTREME (and ``label``)."""
    n = rows.num_rows
    data = {name: rows[name] for name in rows.column_names}
    data["feature_timestamp"] = pa.array([when] * n, pa.timestamp("us"))
    for column in COLUMNS:
        data[column] = pa.array([EXTREME] * n, rows.schema.field(column).type)
    data["churned"] = pa.array([label] * n, pa.int32())
    return pa.table(data, schema=rows.schema)


def test_future_feature_values_never_reach_earlier_training_rows(asgard_home: Path) -> None:
    """Two labelled snapshots; the later one, and a row one second after PRIOR, carry extreme values."""
    base = customer_metrics(n=300)
    prior = base.filter(pc.equal(base["feature_timestamp"], pa.scalar(snapshot_time(PRIOR), pa.timestamp("us"))))
    later = _extreme(prior, snapshot_time(AS_OF), label=1)  # labelled: it is in the training set too
    just_after = _extreme(prior, snapshot_time(PRIOR) + timedelta(seconds=1), label=None)
    write_customer_metrics(pa.concat_tables([prior, later, just_after]))
    register_operator(materialize=False).execute(run_context())

    frame = _context().training_frame()

    assert len(frame) == 600  # PRIOR and AS_OF rows; the unlabelled planted row is no training example
    at_prior = frame[frame[EVENT_TIMESTAMP] == pd.Timestamp(snapshot_time(PRIOR), tz="UTC")]
    at_as_of = frame[frame[EVENT_TIMESTAMP] == pd.Timestamp(snapshot_time(AS_OF), tz="UTC")]
    assert len(at_prior) == len(at_as_of) == 300
    assert (at_prior[COLUMNS] < EXTREME).all().all(), "a value from after the entity timestamp leaked"
    expected = prior.to_pandas().set_index("customer_id").sort_index()
    got = at_prior.set_index("customer_id").sort_index()
    for column in COLUMNS:
        np.testing.assert_allclose(got[column].astype("float64"), expected[column].astype("float64"))
    np.testing.assert_array_equal(got["churned"], expected["churned"])
    # The later rows do see their own (extreme) values: the join is point-in-time, not "earliest row".
    assert (at_as_of[COLUMNS] == EXTREME).all().all()


def test_labels_come_from_the_pinned_snapshot(asgard_home: Path) -> None:
    base = customer_metrics(n=200)
    write_customer_metrics(base)
    pinned = IcebergHook().load_table("gold.customer_metrics").current_snapshot().snapshot_id
    flipped = base.set_column(
        base.schema.get_field_index("churned"), "churned", pc.subtract(pa.scalar(1, pa.int32()), base["churned"])
    )
    write_customer_metrics(flipped)
    register_operator(materialize=False).execute(run_context())

    old = _context(label_snapshot_id=pinned).entity_df().sort_values("customer_id", ignore_index=True)
    new = _context().entity_df().sort_values("customer_id", ignore_index=True)
    assert len(old) == len(new) == 200
    assert (old["churned"] + new["churned"] == 1).all()


def test_split_is_by_entity_deterministic_and_stable(asgard_home: Path) -> None:
    ctx = _context(feast_repo_path=str(asgard_home))
    frame = customer_metrics(n=2000).to_pandas()  # two rows per customer
    train, holdout = ctx.split(frame)
    assert len(train) + len(holdout) == len(frame)
    assert not set(train["customer_id"]) & set(holdout["customer_id"]), "a customer is on both sides"
    assert 0.17 < holdout["customer_id"].nunique() / 2000 < 0.23
    _, again_holdout = ctx.split(frame.sample(frac=1.0, random_state=3))
    assert set(again_holdout["customer_id"]) == set(holdout["customer_id"])
    # More customers later: the earlier held-out ones stay held out (never trained on by a later model).
    bigger = customer_metrics(n=3000, seed=11).to_pandas()
    _, bigger_holdout = ctx.split(bigger)
    assert set(holdout["customer_id"]) <= set(bigger_holdout["customer_id"])
    with pytest.raises(Exception, match="holdout_fraction"):
        ctx.split(frame, holdout_fraction=1.5)


def _series(n_stores: int = 4, n_skus: int = 25) -> pa.Table:
    """Two snapshots of every (store_id, sku_id) pair; sku ids repeat across stores."""
    stores, skus = np.meshgrid(np.arange(1, n_stores + 1), np.arange(1, n_skus + 1), indexing="ij")
    pairs = len(stores.ravel())
    stamps = [snapshot_time(PRIOR)] * pairs + [snapshot_time(AS_OF)] * pairs
    return pa.table(
        {
            "store_id": pa.array(np.tile(stores.ravel(), 2), pa.int64()),
            "sku_id": pa.array([f"sku{s}" for s in np.tile(skus.ravel(), 2)], pa.string()),
            "feature_timestamp": pa.array(stamps, pa.timestamp("us")),
            "units_next_7d": pa.array([float(i % 17) for i in range(pairs)] + [None] * pairs, pa.float64()),
        }
    )


def test_composite_key_labels_and_split_keep_each_series_on_one_side(asgard_home: Path) -> None:
    IcebergHook().write("gold.series", [_series()], mode="overwrite")
    ctx = _context(
        label_table="gold.series",
        label_column="units_next_7d",
        entity_key="store_id",
        entity_keys=["store_id", "sku_id"],
        task="regression",
    )
    assert ctx.keys == ["store_id", "sku_id"]
    labels = ctx.entity_df()
    assert list(labels.columns) == ["store_id", "sku_id", EVENT_TIMESTAMP, "units_next_7d"]
    assert len(labels) == 100, "only the labelled PRIOR snapshot"
    both = pd.concat([labels, labels.assign(**{EVENT_TIMESTAMP: labels[EVENT_TIMESTAMP] + timedelta(days=1)})])
    train, holdout = ctx.split(both, holdout_fraction=0.3)
    held = set(map(tuple, holdout[["store_id", "sku_id"]].to_numpy()))
    trained = set(map(tuple, train[["store_id", "sku_id"]].to_numpy()))
    assert held and trained and not held & trained, "a (store, sku) series is on one side only"
    assert len(holdout) == 2 * len(held), "both snapshots of a held-out series are held out"
    # The pair decides, not the store alone: one store's SKUs fall on both sides.
    assert {s for s, _ in held} & {s for s, _ in trained}


def test_single_key_split_is_unchanged_by_entity_keys(asgard_home: Path) -> None:
    frame = pd.DataFrame({"customer_id": range(1000, 1400), "x": 0.0})
    old = _context().split(frame)
    new = _context(entity_keys=["customer_id"]).split(frame)
    assert old[1]["customer_id"].tolist() == new[1]["customer_id"].tolist()


def test_a_tagged_training_set_is_the_tagged_snapshots_rows_not_newer_ones(asgard_home: Path) -> None:
    """Tag a snapshot, then overwrite its features with extreme values and add labelled rows: the pinned
    point-in-time join still returns exactly the tagged rows with the tagged values."""
    base = customer_metrics(n=150)
    write_customer_metrics(base)
    table = IcebergHook().load_table("gold.customer_metrics")
    tagged = wap.tag(table, "gold.customer_metrics", "release_1")
    prior = base.filter(pc.equal(base["feature_timestamp"], pa.scalar(snapshot_time(PRIOR), pa.timestamp("us"))))
    newer = _extreme(prior, snapshot_time(AS_OF) - timedelta(days=1), label=1)
    changed = prior.set_column(
        prior.schema.get_field_index(COLUMNS[0]), COLUMNS[0], pa.array([EXTREME] * prior.num_rows, pa.int64())
    )
    write_customer_metrics(pa.concat_tables([changed, newer]))
    register_operator(materialize=False).execute(run_context())
    pin = {FEATURE_VIEW: tagged}

    frame = _context(label_snapshot_id=tagged, feature_snapshots=pin, as_of_tag="release_1").training_frame()
    labels_only = _context(label_snapshot_id=tagged).training_frame()
    current = _context().training_frame()

    expected = prior.to_pandas().set_index("customer_id").sort_index()
    got = frame.set_index("customer_id").sort_index()
    assert len(frame) == 150 and (frame[EVENT_TIMESTAMP] == pd.Timestamp(snapshot_time(PRIOR), tz="UTC")).all()
    for column in COLUMNS:
        np.testing.assert_allclose(got[column].astype("float64"), expected[column].astype("float64"))
    np.testing.assert_array_equal(got["churned"], expected["churned"])
    # Unpinned features read the current snapshot; unpinned labels add the newer rows.
    assert len(labels_only) == 150 and (labels_only[COLUMNS[0]] == EXTREME).all()
    assert len(current) == 300


def test_log_sklearn_model_logs_a_loadable_pinned_model_with_a_signature(tmp_path: Path) -> None:
    import mlflow
    from mlflow.models import Model
    from sklearn.ensemble import RandomForestClassifier

    from asgard_provider.exceptions import TrainingError

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    mlflow.set_experiment("log_model")
    x = pd.DataFrame({"a": np.arange(40.0), "b": np.arange(40.0) % 7})
    y = (x["a"] > 20).astype("int64")
    model = RandomForestClassifier(n_estimators=5, random_state=0).fit(x, y)
    ctx = _context(model_artifact_path="model")
    with pytest.raises(TrainingError, match=r"inside `with mlflow\.start_run"):
        ctx.log_sklearn_model(model, x)
    with mlflow.start_run() as run:
        ctx.log_sklearn_model(
            model, x, model.predict_proba(x), trusted_types=["sklearn.tree._tree.Tree"], predict_fn="predict_proba"
        )
    uri = f"runs:/{run.info.run_id}/model"
    logged = Model.load(uri)
    assert logged.signature is not None and logged.signature.inputs.input_names() == ["a", "b"]
    assert logged.saved_input_example_info is None  # no example: MLflow would reload the model to validate it
    requirements = Path(mlflow.artifacts.download_artifacts(f"{uri}/requirements.txt")).read_text()
    assert "skops" in requirements and "scikit-learn==" in requirements
    reloaded = mlflow.pyfunc.load_model(uri).predict(x)
    np.testing.assert_allclose(np.asarray(reloaded), model.predict_proba(x))
