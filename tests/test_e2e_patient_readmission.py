"""The patient readmission example pipeline (config + SQL + dbt + training script only), end to end: de-identified."""

from __future__ import annotations

import hashlib
import json
import re
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
AS_OF = date(2025, 11, 11)
SCALE = 0.15  # 3,000 patients, about 5,000 admissions
READMISSION_DAYS = 30
SECRET = "test-pseudonym-secret"
#: Column the predict stage writes the probability to.
PROBABILITY = "readmission_probability"
#: Identifiers that may exist only in the source systems (the MRN reaches Bronze, which needs it to link rows).
IDENTIFIERS = ("full_name", "ssn", "date_of_birth", "street_address", "phone")
SSN = re.compile(r"\b\d{3}-\d{2}-\d{4}\b")


@pytest.fixture
def sources(asgard_home: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    """The EMR and the laboratory system as SQLite files, and the pseudonym secret as an Airflow Variable."""
    from asgard_demo.readmission import generate

    out = asgard_home / "sources" / "readmission"
    manifest = generate(out, as_of=AS_OF, scale=SCALE, seed=42)
    for conn_id, name in (("ASGARD_EMR_DB", "emr.db"), ("ASGARD_LABS_DB", "labs.db")):
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id}", json.dumps({"conn_type": "sqlite", "host": str(out / name)}))
    monkeypatch.setenv("AIRFLOW_VAR_ASGARD_PSEUDONYM_SECRET", SECRET)
    return manifest


def _run_dag() -> object:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(REPO / "dags" / "patient_readmission.py"), safe_mode=False)
    assert bag.import_errors == {}
    # 22:00 UTC, as scheduled: the run scores the admissions discharged on AS_OF.
    logical = datetime(AS_OF.year, AS_OF.month, AS_OF.day, 22, tzinfo=UTC)
    return bag.dags["patient_readmission"].test(logical_date=logical)


def _source_patients(sources: dict, asgard_home: Path):
    import sqlite3

    import pandas as pd

    with sqlite3.connect(asgard_home / "sources" / "readmission" / sources["files"]["emr"]) as conn:
        return pd.read_sql("SELECT * FROM patients", conn)


def _assert_no_personal_data(hook, patients) -> set[str]:
    """No personal column in any lakehouse table; no SSN or name values; no MRN beyond Bronze. Returns the tables."""
    mrns = set(patients["mrn"])
    names = set(patients["full_name"])
    checked = set()
    for namespace in ("bronze", "silver", "gold"):
        for _, table_name in hook.catalog.list_tables(namespace):
            where = f"{namespace}.{table_name}"
            checked.add(where)
            data = hook.load_table(where).scan().to_pandas()
            assert not set(IDENTIFIERS) & set(data.columns), where
            if namespace != "bronze":
                assert "mrn" not in data.columns, where
            for column in data.select_dtypes(include=[object]).columns:
                values = set(data[column].dropna().astype(str))
                assert not any(SSN.search(v) for v in values), f"{where}.{column} holds SSNs"
                assert not values & names, f"{where}.{column} holds patient names"
                if namespace != "bronze":
                    assert not values & mrns, f"{where}.{column} holds medical record numbers"
    return checked


@pytest.mark.e2e
@pytest.mark.spark
def test_patient_readmission_pipeline_end_to_end(airflow_db: Path, asgard_home: Path, sources: dict) -> None:
    import pandas as pd
    from sklearn.metrics import roc_auc_score

    from asgard_provider.hooks.iceberg import IcebergHook
    from asgard_provider.hooks.mlflow import MLflowHook

    run = _run_dag()
    assert run.state == "success"
    hook = IcebergHook()
    patients = _source_patients(sources, asgard_home)
    assert set(IDENTIFIERS) <= set(patients.columns), "the source does hold personal data"

    # Bronze holds every row, but only the columns the config lists.
    bronze_patients = hook.load_table("bronze.patients").scan().to_arrow()
    assert bronze_patients.num_rows == sources["patients"]
    assert set(bronze_patients.column_names) == {"mrn", "sex", "insurance_type"}
    bronze = hook.load_table("bronze.admissions").scan().to_arrow().num_rows
    assert bronze == sources["admissions"]
    assert hook.load_table("bronze.lab_results").scan().to_arrow().num_rows == sources["lab_results"]

    # Silver + quarantine reconcile with Bronze; each planted defect is quarantined under its own reason.
    silver = hook.load_table("silver.admissions").scan().to_pandas()
    quarantine = hook.load_table("silver.admissions_quarantine").scan().to_pandas()
    assert len(silver) + len(quarantine) == bronze
    assert len(silver) == sources["clean_admissions"]
    assert quarantine["_rejected_reason"].value_counts().to_dict() == sources["dirty"]["admissions"]

    # The patient key is the salted hash of the MRN: stable per patient, not the bare (guessable) hash.
    salted = {hashlib.sha256(f"{SECRET}:{m}".encode()).hexdigest() for m in patients["mrn"]}
    bare = {hashlib.sha256(m.encode()).hexdigest() for m in patients["mrn"]}
    assert set(silver["patient_key"]) <= salted
    assert not set(silver["patient_key"]) & bare
    checked = _assert_no_personal_data(hook, patients)
    assert {
        "bronze.patients",
        "bronze.admissions",
        "bronze.lab_results",
        "silver.admissions",
        "silver.admissions_quarantine",
        "gold.admission_features",
        "gold.readmission_predictions",
        "gold.readmission_predictions_monitoring",
    } <= checked

    # Gold: discharges after the warm-up up to AS_OF; the last 30 days unlabelled; a realistic readmission rate.
    gold = hook.load_table("gold.admission_features").scan().to_pandas()
    assert gold["admission_id"].is_unique and set(gold["admission_id"]) <= set(silver["admission_id"])
    assert gold["discharge_date"].max() == AS_OF
    open_window = gold["discharge_date"] >= AS_OF - timedelta(days=READMISSION_DAYS)
    assert gold.loc[open_window, "readmitted_30d"].isna().all()
    labelled = gold.loc[~open_window, "readmitted_30d"]
    assert labelled.notna().all() and 0.1 < labelled.mean() < 0.3

    # The champion clears the configured floor and beats "patients admitted often come back".
    client = MLflowHook().client()
    champion = client.get_model_version_by_alias("readmission_classifier", "champion")
    metrics = client.get_run(champion.run_id).data.metrics
    assert metrics["roc_auc"] >= 0.7
    assert metrics["roc_auc"] > metrics["baseline_roc_auc_prior_admissions"]
    rows = gold[~open_window]
    assert roc_auc_score(rows["readmitted_30d"], rows["prior_admissions"]) < metrics["roc_auc"]

    # scope new_events: every admission discharged in the run's data interval (the 24 h before 22:00 on AS_OF) is
    # scored exactly once; predictions carry no personal data either.
    predictions = hook.load_table("gold.readmission_predictions").scan().to_pandas()
    end = pd.Timestamp(datetime(AS_OF.year, AS_OF.month, AS_OF.day, 22))
    today = gold[(gold["feature_timestamp"] >= end - pd.Timedelta(days=1)) & (gold["feature_timestamp"] < end)]
    assert len(predictions) == len(today) > 0
    assert set(predictions["admission_id"]) == set(today["admission_id"])
    assert predictions["admission_id"].is_unique
    assert predictions[PROBABILITY].between(0, 1).all()
    assert set(predictions["model_version"].astype(str)) == {str(champion.version)}
