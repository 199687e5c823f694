"""Generate the patient readmission example's sources: patients, admissions and lab results with a learnable signal.

``python -m asgard_demo.readmission --out DIR --as-of DATE --scale S`` writes:

- ``DIR/emr.db`` (SQLite, tables ``patients`` and ``admissions``): the electronic medical record system. Patients
  carry personal data (name, SSN, date of birth, address, phone) that must never reach the lakehouse,
- ``DIR/labs.db`` (SQLite, table ``lab_results``): the laboratory system, by admission,
- ``DIR/manifest.json``: rows per table, planted dirty rows per category, the readmission rate and the
  admissions discharged on ``as_of`` (the ones the pipeline scores).

Each patient has a latent frailty. Frail patients are admitted more often, stay longer, take more medications and
have more abnormal lab results; a discharge is followed by a readmission within 30 days with a probability that
rises with frailty, heart failure or COPD, a discharge against medical advice and prior admissions. So prior
admissions, length of stay, diagnosis, discharge disposition and abnormal labs learn the label well but not
perfectly. Discharges span :data:`HISTORY_DAYS` days up to ``as_of`` (until 21:00).

Dirty admissions are extra rows Silver must quarantine (:data:`DIRTY_RATES`, one defect each), so
``admissions - sum(dirty) == rows Silver keeps``.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from asgard_demo.sources import (
    SECONDS_PER_DAY,
    dirty_count,
    epoch_seconds,
    run_cli,
    timestamps,
    write_manifest,
    write_sqlite,
)

DEFAULT_PATIENTS = 20_000
HISTORY_DAYS = 540
#: A discharge is followed by a readmission when the next admission starts within this many days.
READMISSION_DAYS = 30
#: Discharges of as_of end before this hour (the pipeline runs at 22:00).
SCORED_UNTIL_HOUR = 21

EMR_FILE = "emr.db"
LABS_FILE = "labs.db"
FIRST_ADMISSION_ID = 500_001
UNKNOWN_MRN = "MRN-9999999"
#: Columns of ``patients`` that are personal data: the pipeline must never copy them.
PERSONAL_COLUMNS = ("full_name", "ssn", "date_of_birth", "street_address", "phone")

DIRTY_RATES: dict[str, float] = {
    "null_mrn": 0.004,
    "unknown_patient": 0.004,
    "discharge_before_admission": 0.004,
    "invalid_timestamp": 0.003,
    "duplicate": 0.004,
}

_DIAGNOSES = ("heart_failure", "copd", "pneumonia", "diabetes", "hip_replacement", "sepsis", "stroke", "other")
_DIAGNOSIS_WEIGHTS = (0.14, 0.12, 0.14, 0.12, 0.08, 0.08, 0.07, 0.25)
_DIAGNOSIS_RISK = {"heart_failure": 0.9, "copd": 0.7, "sepsis": 0.4, "pneumonia": 0.2, "diabetes": 0.3}
_LAB_TESTS = ("creatinine", "sodium", "hemoglobin", "glucose", "potassium")
_STREETS = ("Storgata", "Main St", "Elm Rd", "Kongens gate", "Oak Ave", "Fjordveien", "High St")
_FIRST = ("ada", "bjorn", "chloe", "dmitri", "elin", "farah", "goran", "hana", "ivan", "jonas", "kari", "liv")
_LAST = ("berg", "dahl", "eriksen", "haugen", "lund", "moen", "nilsen", "strand", "vik", "solberg")


def _patients(rng: np.random.Generator, n: int, as_of: date) -> pd.DataFrame:
    """Build the EMR's patient register, personal data included (never copied by the pipeline)."""
    mrn = np.char.add("MRN-", np.char.zfill(np.arange(1_000_001, 1_000_001 + n).astype(str), 7))
    age = np.clip(rng.normal(66, 14, n), 18, 99)
    birth = np.datetime64(as_of.isoformat()) - (age * 365.25).astype("timedelta64[D]")
    ssn = np.array([f"{a:03d}-{b:02d}-{c:04d}" for a, b, c in rng.integers((100, 10, 1000), (900, 99, 9999), (n, 3))])
    return pd.DataFrame(
        {
            "mrn": mrn.astype(object),
            "full_name": np.char.add(np.char.add(rng.choice(_FIRST, n), " "), rng.choice(_LAST, n)).astype(object),
            "ssn": ssn.astype(object),
            "date_of_birth": np.datetime_as_string(birth, unit="D").astype(object),
            "street_address": [f"{rng.integers(1, 200)} {s}" for s in rng.choice(_STREETS, n)],
            "phone": [f"+47 {p:08d}" for p in rng.integers(40_000_000, 99_999_999, n)],
            "sex": rng.choice(("F", "M"), n).astype(object),
            "insurance_type": rng.choice(("medicare", "medicaid", "private", "none"), n, p=(0.5, 0.2, 0.25, 0.05)),
            "frailty": rng.normal(0.0, 1.0, n),
            "age": age,
        }
    )


def _admission_type(rng: np.random.Generator) -> str:
    return "emergency" if rng.random() < 0.6 else str(rng.choice(("urgent", "elective")))


def _readmit_probability(frailty: float, diagnosis: str, ama: bool, prior: int, labs: int) -> float:
    logit = -3.7 + 0.9 * frailty + _DIAGNOSIS_RISK.get(diagnosis, 0.0) + 1.5 * ama + 0.35 * min(prior, 4) + 0.2 * labs
    return float(1.0 / (1.0 + np.exp(-logit)))


def _admissions(rng: np.random.Generator, patients: pd.DataFrame, as_of: date) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Each patient's admissions in time order; readmissions follow discharges with a learnable probability."""
    start = epoch_seconds(as_of) - HISTORY_DAYS * SECONDS_PER_DAY
    end = epoch_seconds(as_of) + SCORED_UNTIL_HOUR * 3600
    rows: list[dict[str, Any]] = []
    labs: list[dict[str, Any]] = []
    for patient in patients.itertuples(index=False):
        rate = 0.9 * np.exp(0.7 * patient.frailty) / 365.0  # admissions per day
        admit = start + rng.exponential(1.0 / rate) * SECONDS_PER_DAY - 200 * SECONDS_PER_DAY
        discharges: list[int] = []
        while True:
            diagnosis = str(rng.choice(_DIAGNOSES, p=_DIAGNOSIS_WEIGHTS))
            stay = rng.gamma(2.0, 1.6 + 0.8 * max(patient.frailty, -1.0)) * SECONDS_PER_DAY + 6 * 3600
            discharge = int(admit + stay)
            if discharge >= end:
                break
            ama = rng.random() < 0.04
            abnormal = int(rng.binomial(5, min(0.9, 0.15 + 0.1 * max(patient.frailty + 1.0, 0.0))))
            prior = sum(1 for d in discharges if d > admit - 180 * SECONDS_PER_DAY)
            if discharge >= start:
                admission_id = FIRST_ADMISSION_ID + len(rows)
                rows.append(
                    {
                        "admission_id": admission_id,
                        "mrn": patient.mrn,
                        "admit_ts": int(admit),
                        "discharge_ts": discharge,
                        "admission_type": _admission_type(rng),
                        "primary_diagnosis": diagnosis,
                        "age_at_admission": int(patient.age - (end - admit) / SECONDS_PER_DAY / 365.25),
                        "num_procedures": int(rng.poisson(1.0 + 0.5 * (diagnosis == "hip_replacement") * 3)),
                        "num_medications": int(rng.poisson(max(1.0, 6.0 + 2.5 * patient.frailty))),
                        "discharge_disposition": "against_medical_advice"
                        if ama
                        else str(rng.choice(("home", "home_health", "skilled_nursing"), p=(0.6, 0.25, 0.15))),
                    }
                )
                for k, test in enumerate(rng.choice(_LAB_TESTS, 5, replace=False)):
                    labs.append(
                        {
                            "admission_id": admission_id,
                            "test_name": str(test),
                            "abnormal_flag": "H" if k < abnormal else "N",
                            "taken_at": int(admit + rng.uniform(0.1, 0.9) * stay),
                        }
                    )
            discharges.append(discharge)
            if rng.random() < _readmit_probability(patient.frailty, diagnosis, ama, prior, abnormal):
                admit = discharge + rng.uniform(1.0, READMISSION_DAYS - 1.0) * SECONDS_PER_DAY
            else:
                admit = discharge + (READMISSION_DAYS + rng.exponential(1.0 / rate)) * SECONDS_PER_DAY
    return pd.DataFrame(rows), pd.DataFrame(labs)


def _source_admissions(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.copy()
    out["admit_ts"] = timestamps(frame["admit_ts"].to_numpy()).astype(object)
    out["discharge_ts"] = timestamps(frame["discharge_ts"].to_numpy()).astype(object)
    return out


def _dirty(rng: np.random.Generator, rows: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, int]]:
    """Extra admissions with one defect each; duplicates are re-deliveries of real admissions."""
    counts = {name: dirty_count(rate, len(rows)) for name, rate in DIRTY_RATES.items()}
    next_id = int(rows["admission_id"].max()) + 1
    extra = []
    for name, count in counts.items():
        part = rows.iloc[rng.choice(len(rows), count, replace=False)].copy()
        if name != "duplicate":
            part["admission_id"] = np.arange(next_id, next_id + count)
            next_id += count
        if name == "null_mrn":
            part["mrn"] = None
        elif name == "unknown_patient":
            part["mrn"] = UNKNOWN_MRN
        elif name == "discharge_before_admission":
            part["discharge_ts"], part["admit_ts"] = part["admit_ts"].to_numpy(), part["discharge_ts"].to_numpy()
        elif name == "invalid_timestamp":
            part["admit_ts"] = "unknown"
        extra.append(part)
    return pd.concat([rows, *extra], ignore_index=True), counts


def _readmitted(frame: pd.DataFrame) -> np.ndarray:
    """1 where the patient's next admission starts within READMISSION_DAYS of the discharge."""
    ordered = frame.sort_values(["mrn", "admit_ts"])
    next_admit = ordered.groupby("mrn")["admit_ts"].shift(-1)
    flag = (next_admit - ordered["discharge_ts"]) < READMISSION_DAYS * SECONDS_PER_DAY
    return flag.reindex(frame.index).to_numpy(dtype=bool)


def generate(out_dir: Path, *, as_of: date | None = None, scale: float = 1.0, seed: int = 42) -> dict[str, Any]:
    """Write emr.db, labs.db and the manifest to ``out_dir``; return the manifest.

    The manifest holds the rows per table (dirty rows included), ``dirty`` (rows per planted defect),
    ``clean_admissions``, ``scored_admissions`` (discharged on ``as_of``), ``readmission_rate`` among admissions
    discharged more than 30 days before ``as_of`` and ``personal_columns`` (of ``patients``).
    """
    as_of = as_of or datetime.now(UTC).date()
    n_patients = max(100, round(DEFAULT_PATIENTS * scale))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(3)]
    patients = _patients(rng[0], n_patients, as_of)
    clean, labs = _admissions(rng[1], patients, as_of)
    rows, dirty = _dirty(rng[2], _source_admissions(clean))
    labs["lab_id"] = np.arange(1, len(labs) + 1)
    labs["taken_at"] = timestamps(labs["taken_at"].to_numpy()).astype(object)
    write_sqlite(
        out_dir / EMR_FILE,
        {"patients": patients.drop(columns=["frailty", "age"]), "admissions": rows},
    )
    lab_columns = ["lab_id", "admission_id", "test_name", "abnormal_flag", "taken_at"]
    write_sqlite(out_dir / LABS_FILE, {"lab_results": labs[lab_columns]})

    day = clean["discharge_ts"].to_numpy() // SECONDS_PER_DAY
    scored = day == epoch_seconds(as_of) // SECONDS_PER_DAY
    labelled = clean["discharge_ts"].to_numpy() < epoch_seconds(as_of) - READMISSION_DAYS * SECONDS_PER_DAY
    readmitted = _readmitted(clean)
    manifest: dict[str, Any] = {
        "as_of": as_of.isoformat(),
        "seed": seed,
        "patients": n_patients,
        "admissions": len(rows),
        "lab_results": len(labs),
        "dirty": {"admissions": dirty},
        "clean_admissions": len(clean),
        "scored_admissions": int(scored.sum()),
        "labelled_admissions": int(labelled.sum()),
        "readmission_rate": round(float(readmitted[labelled].mean()), 4),
        "personal_columns": list(PERSONAL_COLUMNS),
        "files": {"emr": EMR_FILE, "labs": LABS_FILE},
    }
    write_manifest(out_dir, manifest)
    return manifest


def _summary(manifest: dict[str, Any]) -> list[str]:
    dirty = manifest["dirty"]["admissions"]
    return [
        f"patients     {manifest['patients']:>9,}  (personal columns: {', '.join(manifest['personal_columns'])})",
        f"admissions   {manifest['admissions']:>9,}  dirty: {sum(dirty.values())} "
        f"({', '.join(f'{k}={v}' for k, v in dirty.items())})",
        f"lab_results  {manifest['lab_results']:>9,}",
        f"readmission rate {manifest['readmission_rate']:.1%} of {manifest['labelled_admissions']:,} labelled "
        f"admissions; {manifest['scored_admissions']:,} discharged on {manifest['as_of']} to score",
    ]


def main(argv: list[str] | None = None) -> int:
    """Command line entry point: ``python -m asgard_demo.readmission --out DIR``."""
    return run_cli("python -m asgard_demo.readmission", __doc__.splitlines()[0], generate, _summary, argv)


if __name__ == "__main__":
    raise SystemExit(main())
