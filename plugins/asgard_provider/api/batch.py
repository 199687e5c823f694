"""Batch inference through Airflow: start a run of a pipeline's DAG (which ends with its batch inference task).

The run is created by Airflow's own service (``airflow.api.common.trigger_dag``, what ``POST /api/v2/dags/{dag_id}/
dagRuns`` uses) in this process, with the caller's name and the run ``conf`` validated against the DAG's params; the
scheduler runs it. Access is Airflow's: DAG-run create to start one, DAG-run read for its status.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends, HTTPException
from fastapi import Path as PathParam
from pydantic import BaseModel, ConfigDict, Field

from asgard_provider.stages.predict import TASK

_ID = r"^[A-Za-z0-9_.~:+-]+$"


class BatchInferenceRequest(BaseModel):
    """A run of the pipeline's DAG: ``conf`` holds DAG params (validated by Airflow), ``run_id`` is optional."""

    model_config = ConfigDict(extra="forbid")

    conf: dict[str, Any] = Field(default_factory=dict, examples=[{"full_refresh": False}])
    run_id: str | None = Field(default=None, min_length=1, max_length=250, pattern=_ID)
    note: str | None = Field(default=None, max_length=1000)


class TaskState(BaseModel):
    """The batch inference task of the run (absent until the scheduler creates it)."""

    task_id: str
    state: str | None
    try_number: int
    start_date: str | None
    end_date: str | None
    duration_seconds: float | None


class BatchInferenceRun(BaseModel):
    """A DAG run of the pipeline and where its batch inference task stands."""

    dag_id: str
    run_id: str
    state: str
    is_paused: bool | None
    run_after: str | None
    start_date: str | None
    end_date: str | None
    triggering_user_name: str | None
    conf: dict[str, Any]
    task_states: dict[str, int]
    batch_inference: TaskState | None


def router(auth: bool) -> APIRouter:
    """Routes ``/pipelines/{dag_id}/batch-inference`` (start) and ``.../{run_id}`` (status)."""
    from asgard_provider.api.app import _ERRORS

    api = APIRouter(tags=["batch inference"], responses={404: _ERRORS, 409: _ERRORS, 422: _ERRORS})
    create, read, user = _checks(auth)

    @api.post(
        "/pipelines/{dag_id}/batch-inference",
        response_model=BatchInferenceRun,
        status_code=201,
        summary="Start batch inference (a DAG run of the pipeline)",
        dependencies=create,
    )
    def start(
        body: BatchInferenceRequest, dag_id: str = PathParam(max_length=250, pattern=_ID), caller: Any = user
    ) -> BatchInferenceRun:
        """Queue a run of the pipeline's DAG; its last task scores the latest features with the model."""
        return trigger(dag_id, body, caller.get_name() if caller is not None else None)

    @api.get(
        "/pipelines/{dag_id}/batch-inference/{run_id}",
        response_model=BatchInferenceRun,
        summary="Status of a batch inference run",
        dependencies=read,
    )
    def status(
        dag_id: str = PathParam(max_length=250, pattern=_ID), run_id: str = PathParam(max_length=250, pattern=_ID)
    ) -> BatchInferenceRun:
        """Return the run's state, its tasks' states counted, and the batch inference task's state."""
        return run_status(dag_id, run_id)

    return api


def _checks(auth: bool) -> tuple[list[Any], list[Any], Any]:
    """Airflow's DAG-run access checks (they read ``dag_id`` from the path) and the caller, or none."""
    if not auth:
        return [], [], Depends(lambda: None)
    from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity
    from airflow.api_fastapi.core_api.security import get_user, requires_access_dag

    create = [Depends(requires_access_dag("POST", DagAccessEntity.RUN))]
    read = [Depends(requires_access_dag("GET", DagAccessEntity.RUN))]
    return create, read, Depends(get_user)


def trigger(dag_id: str, body: BatchInferenceRequest, user: str | None) -> BatchInferenceRun:
    """Create the DAG run (queued); 404 for an unknown DAG or one without batch inference, 409 for a taken id."""
    from airflow.api.common.trigger_dag import trigger_dag
    from airflow.exceptions import DagNotFound, DagRunAlreadyExists
    from airflow.models.dagbag import DBDagBag
    from airflow.utils.session import create_session
    from airflow.utils.types import DagRunTriggeredByType

    with create_session() as session:
        dag = DBDagBag().get_latest_version_of_dag(dag_id, session=session)
        if dag is None:
            raise HTTPException(404, f"no pipeline DAG {dag_id!r} (has the DAG processor parsed it?)")
        if TASK not in dag.task_ids:
            raise HTTPException(404, f"pipeline {dag_id!r} has no batch inference task ({TASK!r}): no predict stage")
    try:
        run = trigger_dag(
            dag_id,
            triggered_by=DagRunTriggeredByType.REST_API,
            triggering_user_name=user,
            run_id=body.run_id,
            conf=body.conf,
            note=body.note,
        )
    except DagNotFound as exc:
        raise HTTPException(404, str(exc)) from None
    except DagRunAlreadyExists:
        raise HTTPException(409, f"run {body.run_id!r} of {dag_id!r} already exists") from None
    except ValueError as exc:  # ParamValidationError: conf against the DAG's params
        raise HTTPException(422, f"conf: {exc}") from None
    if run is None:
        raise HTTPException(404, f"no pipeline DAG {dag_id!r}")
    return run_status(dag_id, run.run_id)


def run_status(dag_id: str, run_id: str) -> BatchInferenceRun:
    """Read the run and its task instances from the metadata DB; 404 if the run does not exist."""
    from airflow.models.dag import DagModel
    from airflow.models.dagrun import DagRun
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        run = session.scalar(select(DagRun).where(DagRun.dag_id == dag_id, DagRun.run_id == run_id))
        if run is None:
            raise HTTPException(404, f"no run {run_id!r} of {dag_id!r}")
        tis = session.scalars(
            select(TaskInstance).where(TaskInstance.dag_id == dag_id, TaskInstance.run_id == run_id)
        ).all()
        counts: dict[str, int] = {}
        for ti in tis:
            counts[str(ti.state or "none")] = counts.get(str(ti.state or "none"), 0) + 1
        task = next((ti for ti in tis if ti.task_id == TASK and ti.map_index == -1), None)
        paused = session.scalar(select(DagModel.is_paused).where(DagModel.dag_id == dag_id))
        return BatchInferenceRun(
            dag_id=dag_id,
            run_id=run.run_id,
            state=str(run.state),
            is_paused=paused,
            run_after=_iso(run.run_after),
            start_date=_iso(run.start_date),
            end_date=_iso(run.end_date),
            triggering_user_name=run.triggering_user_name,
            conf=dict(run.conf or {}),
            task_states=counts,
            batch_inference=_task(task) if task is not None else None,
        )


def _task(ti: Any) -> TaskState:
    return TaskState(
        task_id=ti.task_id,
        state=str(ti.state) if ti.state else None,
        try_number=int(ti.try_number or 0),
        start_date=_iso(ti.start_date),
        end_date=_iso(ti.end_date),
        duration_seconds=float(ti.duration) if ti.duration is not None else None,
    )


def _iso(stamp: datetime | None) -> str | None:
    return stamp.isoformat() if stamp else None
