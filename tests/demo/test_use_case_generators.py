"""The fraud and readmission generators: row counts, planted dirty rows, determinism, a learnable signal."""

from __future__ import annotations

import hashlib
import sqlite3
from datetime import date
from pathlib import Path

import pandas as pd
import pytest

from asgard_demo import fraud, readmission

AS_OF = date(2025, 11, 11)


def _read(path: Path, table: str) -> pd.DataFrame:
    with sqlite3.connect(path) as conn:
        return pd.read_sql(f"SELECT * FROM {table}", conn)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_fraud_sources_match_the_manifest_and_carry_a_signal(tmp_path: Path) -> None:
    manifest = fraud.generate(tmp_path / "a", as_of=AS_OF, scale=0.05, seed=3)
    rows = _read(tmp_path / "a" / fraud.PAYMENTS_FILE, "card_transactions")
    assert len(rows) == manifest["card_transactions"]
    assert len(rows) - sum(manifest["dirty"]["card_transactions"].values()) == manifest["clean_transactions"]
    assert rows["card_id"].isna().sum() == manifest["dirty"]["card_transactions"]["null_card_id"]
    assert (rows["card_id"] == fraud.UNKNOWN_CARD_ID).sum() == manifest["dirty"]["card_transactions"]["unknown_card"]
    assert rows["transaction_id"].duplicated().sum() == manifest["dirty"]["card_transactions"]["duplicate"]
    dated = rows.loc[rows["transaction_ts"] != "not a timestamp", "transaction_ts"]
    assert (rows["transaction_ts"] == "not a timestamp").sum() == manifest["dirty"]["card_transactions"][
        "invalid_timestamp"
    ]
    assert dated.max() < f"{AS_OF.isoformat()} {fraud.SCORED_UNTIL_HOUR:02d}"
    assert "cardholder_name" in _read(tmp_path / "a" / fraud.CARDS_FILE, "cards").columns
    # Charged-back transactions are far larger than the rest: amount against the card's usual spend is a signal.
    charged = set(_read(tmp_path / "a" / fraud.PAYMENTS_FILE, "chargebacks")["transaction_id"])
    clean = rows[rows["amount"] > 0].drop_duplicates("transaction_id")
    assert clean.loc[clean["transaction_id"].isin(charged), "amount"].median() > 2 * clean["amount"].median()
    assert 0.005 < manifest["fraud_rate"] < 0.05

    again = fraud.generate(tmp_path / "b", as_of=AS_OF, scale=0.05, seed=3)
    assert again == manifest
    assert _digest(tmp_path / "a" / fraud.PAYMENTS_FILE) == _digest(tmp_path / "b" / fraud.PAYMENTS_FILE)


def test_readmission_sources_hold_personal_data_and_match_the_manifest(tmp_path: Path) -> None:
    manifest = readmission.generate(tmp_path, as_of=AS_OF, scale=0.02, seed=5)
    patients = _read(tmp_path / readmission.EMR_FILE, "patients")
    admissions = _read(tmp_path / readmission.EMR_FILE, "admissions")
    assert len(patients) == manifest["patients"]
    assert set(readmission.PERSONAL_COLUMNS) <= set(patients.columns)
    assert patients["ssn"].str.fullmatch(r"\d{3}-\d{2}-\d{4}").all()
    assert len(admissions) == manifest["admissions"]
    assert len(admissions) - sum(manifest["dirty"]["admissions"].values()) == manifest["clean_admissions"]
    assert admissions["mrn"].isna().sum() == manifest["dirty"]["admissions"]["null_mrn"]
    assert admissions["admission_id"].duplicated().sum() == manifest["dirty"]["admissions"]["duplicate"]
    assert 0.1 < manifest["readmission_rate"] < 0.3
    assert len(_read(tmp_path / readmission.LABS_FILE, "lab_results")) == manifest["lab_results"]


@pytest.mark.parametrize("module", [fraud, readmission])
def test_command_line_writes_the_sources(module, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert module.main(["--out", str(tmp_path), "--as-of", "2025-11-11", "--scale", "0.02", "--seed", "1"]) == 0
    assert (tmp_path / "manifest.json").is_file()
    assert "2025-11-11" in capsys.readouterr().out
