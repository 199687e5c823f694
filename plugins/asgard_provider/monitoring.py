"""Moved to :mod:`asgard_provider.engines.monitoring`; these names stay importable from here."""

from __future__ import annotations

from asgard_provider.engines.monitoring import (
    DRIFT_THRESHOLD,
    PREDICTION_PROFILE_ARTIFACT,
    MonitoringReport,
    RunningStats,
    frame_profile,
    monitoring_report,
    monitoring_schema,
    monitoring_table,
    prediction_profiles,
    profile,
    psi,
    reference_profile,
)

__all__ = [
    "DRIFT_THRESHOLD",
    "PREDICTION_PROFILE_ARTIFACT",
    "MonitoringReport",
    "RunningStats",
    "frame_profile",
    "monitoring_report",
    "monitoring_schema",
    "monitoring_table",
    "prediction_profiles",
    "profile",
    "psi",
    "reference_profile",
]
