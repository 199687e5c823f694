"""Build one Airflow DAG from one validated pipeline config."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from airflow.sdk import DAG, BaseOperator, Param

from asgard_provider.assets import table_asset
from asgard_provider.catalog import table_refs
from asgard_provider.pipeline.config import (
    FileSource,
    IngestStage,
    PipelineConfig,
    TransformStage,
    load_pipeline_config,
)
from asgard_provider.settings import include_dir

#: Jinja expression for the date a run's data is "as of": the end of its data interval.
AS_OF = "{{ data_interval_end | ds }}"


def dag_from_file(dag_file: str | Path) -> DAG:
    """Build the DAG for ``include/pipelines/<stem of dag_file>.yaml`` (called from a stub in dags/)."""
    name = Path(dag_file).stem
    base = include_dir()
    path = base / "pipelines" / f"{name}.yaml"
    if not path.exists() and (base / "pipelines" / f"{name}.yml").exists():
        path = base / "pipelines" / f"{name}.yml"
    return build_dag(load_pipeline_config(path, base_dir=base), base_dir=base, config_path=path)


def build_dag(cfg: PipelineConfig, *, base_dir: Path | None = None, config_path: Path | None = None) -> DAG:
    """Create the DAG: ingest >> transform >> dbt >> features >> train >> predict (stages present in cfg)."""
    base = base_dir or include_dir()
    doc = f"{cfg.description}\n\nBuilt by Asgard from `{config_path or cfg.pipeline}`."
    with DAG(
        dag_id=cfg.pipeline,
        description=cfg.description or None,
        doc_md=doc,
        schedule=_schedule(cfg),
        params=_params(cfg),
        start_date=datetime(cfg.start_date.year, cfg.start_date.month, cfg.start_date.day, tzinfo=UTC),
        catchup=cfg.catchup,
        max_active_runs=cfg.max_active_runs,
        tags=["asgard", *cfg.tags],
        template_searchpath=[str(base / "sql")],
        default_args={
            "owner": cfg.owner,
            "retries": cfg.retries,
            "retry_delay": timedelta(minutes=cfg.retry_delay_minutes),
        },
    ) as dag:
        producers: dict[str, list[BaseOperator]] = {}
        last_layer: list[Any] = []
        for stage in cfg.ingest:
            last = _ingest_task(stage)
            last.outlets = [table_asset(stage.target)]
            producers[stage.target] = [last]
            last_layer.append(last)
        transforms: list[Any] = []
        for tr in cfg.transform:
            task = _transform_task(tr)
            task.outlets = [
                table_asset(tr.output_table),
                table_asset(tr.quarantine_table or f"{tr.output_table}_quarantine"),
            ]
            sql_text = (base / "sql" / tr.sql).read_text()
            for ref in table_refs(sql_text):
                for upstream in producers.get(ref, []):
                    upstream >> task
            if tr.checks:
                check = _check_task(f"check_{tr.name}", [tr.output_table], tr.checks)
                task >> check
                task = check
            producers[tr.output_table] = [task]
            transforms.append(task)
        if transforms:
            last_layer = transforms
        if cfg.dbt:
            from asgard_provider.dbt.cosmos import build_dbt_task_group

            group = build_dbt_task_group(
                group_id="gold",
                project_dir=base / "dbt" / cfg.dbt.project,
                dbt_vars={"as_of": AS_OF, **cfg.dbt.vars},
                select=cfg.dbt.select or None,
                target=cfg.dbt.target,
                trino_conn_id=cfg.dbt.connection,
            )
            for upstream in last_layer:
                upstream >> group
            last_layer = [group]
            if cfg.dbt.produces:
                from asgard_provider.pipeline.config import TableChecks

                check = _check_task(
                    f"check_{group.group_id}",
                    cfg.dbt.produces,
                    TableChecks(),
                    per_table=cfg.dbt.checks,
                )
                group >> check
                last_layer = [check]
        if cfg.features:
            from asgard_provider.operators.feast import FeastRegisterOperator

            f = cfg.features
            features_task = FeastRegisterOperator(
                task_id="register_features",
                feature_view=f.feature_view,
                entity=f.entity,
                join_key=f.join_key,
                source_table=f.source_table,
                timestamp_field=f.timestamp_field,
                features=[feat.model_dump() for feat in f.features],
                ttl_days=f.ttl_days,
                tags=f.tags,
                feature_service=f.feature_service,
                materialize=False,
            )
            for upstream in last_layer:
                upstream >> features_task
            last_layer = [features_task]
            if f.materialize:
                from asgard_provider.operators.feast import FeastMaterializeOperator

                # Online serving only: training and batch inference read the offline store, so this runs beside
                # them instead of before them.
                features_task >> FeastMaterializeOperator(
                    task_id="materialize_features",
                    feature_view=f.feature_view,
                    source_table=f.source_table,
                    join_key=f.join_key,
                    timestamp_field=f.timestamp_field,
                    ttl_days=f.ttl_days,
                )
        if cfg.train and cfg.features:
            from asgard_provider.operators.mlflow import MLflowTrainOperator

            t = cfg.train
            train_task = _ml_task(
                MLflowTrainOperator,
                t,
                task_id="train_model",
                script=t.script,
                experiment_name=t.experiment,
                registered_model_name=t.registered_model,
                features=[f"{cfg.features.feature_view}:{feat.name}" for feat in cfg.features.features],
                label_table=t.label_table,
                label_column=t.label_column,
                entity_key=cfg.features.join_key,
                timestamp_field=cfg.features.timestamp_field,
                hyperparameters="{{ params.hyperparameters | tojson }}",
                min_metrics=t.min_metrics,
                execution_timeout=timedelta(minutes=t.timeout_minutes),
            )
            for upstream in last_layer:
                upstream >> train_task
            last_layer = [train_task]
            if cfg.predict:
                from asgard_provider.operators.inference import BatchInferenceOperator

                p = cfg.predict
                predict_task = _ml_task(
                    BatchInferenceOperator,
                    p,
                    publish_tables=[p.output_table],
                    task_id="batch_inference",
                    model_name=t.registered_model,
                    model_alias=p.model_alias,
                    feature_refs=[f"{cfg.features.feature_view}:{feat.name}" for feat in cfg.features.features],
                    entity_table=cfg.features.source_table,
                    entity_key=cfg.features.join_key,
                    timestamp_field=cfg.features.timestamp_field,
                    as_of=AS_OF,
                    output_table=p.output_table,
                    thresholds=dict(p.thresholds),
                    batch_size=p.batch_size,
                )
                predict_task.outlets = [table_asset(p.output_table)]
                train_task >> predict_task
    return dag


def _check_task(task_id: str, tables: list[str], checks: Any, per_table: dict[str, Any] | None = None) -> BaseOperator:
    """One IcebergTableCheckOperator per table group; publishes each table's snapshot as an asset event."""
    from airflow.sdk import TaskGroup

    from asgard_provider.operators.checks import IcebergTableCheckOperator

    per_table = per_table or {}
    if len(tables) == 1 or not per_table:
        spec = per_table.get(tables[0], checks) if len(tables) == 1 else checks
        return IcebergTableCheckOperator(
            task_id=task_id, tables=tables, outlets=[table_asset(t) for t in tables], **spec.model_dump()
        )
    with TaskGroup(group_id=task_id) as group:
        for table in tables:
            spec = per_table.get(table, checks)
            IcebergTableCheckOperator(
                task_id=table.replace(".", "__"), tables=[table], outlets=[table_asset(table)], **spec.model_dump()
            )
    return group  # type: ignore[return-value]


def _schedule(cfg: PipelineConfig) -> Any:
    """Cron schedules get data intervals (a run covers [previous tick, this tick)); or Assets; or none."""
    if cfg.schedule_on:
        return [table_asset(t) for t in cfg.schedule_on]
    if cfg.schedule is None or cfg.schedule in ("@once", "@continuous"):
        return cfg.schedule
    from airflow.timetables.interval import CronDataIntervalTimetable

    return CronDataIntervalTimetable(cfg.schedule, timezone="UTC")


def _params(cfg: PipelineConfig) -> dict[str, Param]:
    """Trigger-form parameters, validated by Airflow (JSON schema) before a run starts."""
    params: dict[str, Param] = {}
    if any(stage.incremental for stage in cfg.ingest):
        params["full_refresh"] = Param(
            False,
            type="boolean",
            title="Full refresh",
            description="Reload every source table completely instead of the run's data interval.",
        )
    if cfg.train:
        params["hyperparameters"] = Param(
            dict(cfg.train.hyperparameters),
            type="object",
            title="Model hyperparameters",
            description=f"Passed to include/training/{cfg.train.script} as ctx.params.",
        )
    return params


def _ingest_task(stage: IngestStage) -> BaseOperator:
    """Return the task whose success means the Bronze table is written."""
    if stage.engine == "airbyte":
        from airflow.providers.airbyte.operators.airbyte import AirbyteTriggerSyncOperator
        from airflow.providers.airbyte.sensors.airbyte import AirbyteJobSensor

        assert stage.airbyte is not None  # guaranteed by IngestStage validation
        trigger = AirbyteTriggerSyncOperator(
            task_id=f"{stage.name}_trigger",
            connection_id=stage.airbyte.connection_id,
            airbyte_conn_id=stage.airbyte.airbyte_conn_id,
            asynchronous=True,
        )
        wait = AirbyteJobSensor(
            task_id=f"{stage.name}_wait",
            airbyte_job_id=trigger.output,  # type: ignore[arg-type]
            airbyte_conn_id=stage.airbyte.airbyte_conn_id,
            deferrable=True,
            timeout=stage.airbyte.timeout_minutes * 60,
        )
        trigger >> wait
        return wait
    from asgard_provider.operators.ingest import FileToIcebergOperator, SqlToIcebergOperator

    src = stage.source
    task: BaseOperator
    if isinstance(src, FileSource):
        task = FileToIcebergOperator(
            task_id=stage.name,
            path=src.path,
            file_format=src.format,
            target_table=stage.target,
            partition_by=stage.partition_by,
        )
    else:
        assert src is not None  # guaranteed by IngestStage validation
        task = SqlToIcebergOperator(
            task_id=stage.name,
            source_conn_id=src.connection,
            source_table=src.table,
            columns=src.columns,
            target_table=stage.target,
            partition_by=stage.partition_by,
            batch_rows=stage.batch_rows,
            **(
                {
                    "cursor_column": stage.incremental.cursor,
                    "interval_start": "{{ data_interval_start }}",
                    "interval_end": "{{ data_interval_end }}",
                    "full_refresh": "{{ params.full_refresh }}",
                }
                if stage.incremental
                else {}
            ),
        )
    return task


def _ml_task(operator: type[BaseOperator], stage: Any, publish_tables: list[str] | None = None, **kwargs: Any) -> Any:
    """Return the ML operator itself (``runner: local``) or a pod running it (``runner: kubernetes``)."""
    if stage.runner != "kubernetes":
        return operator(**kwargs)
    from asgard_provider.operators.kubernetes_pod import AsgardPodOperator

    task_id = kwargs.pop("task_id")
    timeout = kwargs.pop("execution_timeout", None)
    if timeout is not None:
        kwargs["timeout"] = timeout.total_seconds()
    return AsgardPodOperator(
        task_id=task_id,
        task_operator=f"{operator.__module__}.{operator.__name__}",
        task_kwargs=kwargs,
        publish_tables=publish_tables or [],
        execution_timeout=timeout,
        **stage.kubernetes.model_dump(),
    )


def _transform_task(tr: TransformStage) -> BaseOperator:
    from asgard_provider.operators.spark_iceberg import SparkIcebergTransformOperator

    if tr.runner == "kubernetes" and tr.kubernetes is not None:
        from asgard_provider.operators.spark_kubernetes import SparkIcebergKubernetesOperator

        spark = tr.kubernetes.model_dump(exclude={"timeout_minutes"})
        return SparkIcebergKubernetesOperator(
            task_id=tr.name,
            sql=tr.sql,
            output_table=tr.output_table,
            mode=tr.mode,
            partition_by=tr.partition_by,
            merge_keys=tr.merge_keys,
            quarantine_table=tr.quarantine_table,
            execution_timeout=timedelta(minutes=tr.kubernetes.timeout_minutes),
            **spark,
        )

    return SparkIcebergTransformOperator(
        task_id=tr.name,
        sql=tr.sql,
        output_table=tr.output_table,
        mode=tr.mode,
        partition_by=tr.partition_by,
        merge_keys=tr.merge_keys,
        quarantine_table=tr.quarantine_table,
    )
