"""Files of a new pipeline (``asgard new pipeline NAME``): config, Spark SQL, dbt project, training script, DAG.

The scaffold is a small but complete pipeline over one JSON-lines export of events (``entity_id``,
``event_time``, ``amount``): Bronze copy, Silver cleaning with a quarantine, a Gold dbt model with per-entity
features and a forward-looking label, a Feast feature view, a training script and batch inference. ``--task``
picks the label and model: did the entity have events (binary), how many (three classes), their amount
(regression). It passes
``asgard validate --strict`` as written; replace the source, the SQL and the features with your own.
"""

from __future__ import annotations

from pathlib import Path

from asgard_provider.exceptions import PipelineConfigError
from asgard_provider.stages.base import NAME_MAX_LENGTH, is_name

#: The longest name the scaffold derives from NAME: the monitoring table of ``gold.<NAME>_predictions``.
_LONGEST_SUFFIX = "_predictions_monitoring"
_MAX_LENGTH = NAME_MAX_LENGTH - len(_LONGEST_SUFFIX)
_PLACEHOLDER = "__NAME__"

_PIPELINE = """\
# Pipeline __NAME__: sources -> bronze -> silver (Spark) -> gold (dbt) -> features (Feast) -> model (MLflow)
# -> predictions. Scaffolded by `asgard new pipeline __NAME__`; every key is documented in docs/config.md.
pipeline: __NAME__
description: TODO describe what __NAME__ predicts and for whom.
schedule: "0 6 * * *"
start_date: 2025-01-01
catchup: false
tags: [__NAME__]

ingest:
  - name: ingest___NAME__
__SOURCE__    target: bronze.__NAME___events

transform:
  - name: clean___NAME__
    sql: __NAME__/__NAME___cleaned.sql
    output_table: silver.__NAME___cleaned
    checks: {min_rows: 1, not_null: [event_id, entity_id, event_time], unique: [[event_id]]}

dbt:
  project: __NAME__
  produces: [gold.__NAME___features]
  checks:
    gold.__NAME___features:
      min_rows: 1
      not_null: [entity_id, feature_timestamp]
      unique: [[entity_id, snapshot_date]]
__LABEL_CHECK__
features:
  feature_view: __NAME___features
  entity: __NAME___entity
  join_key: entity_id
  source_table: gold.__NAME___features
  timestamp_field: feature_timestamp
  ttl_days: 90
  features:
    - {name: events_30d, dtype: int64}
    - {name: amount_30d, dtype: float64}
    - {name: days_since_last_event, dtype: int64}

train:
  script: __NAME___training.py
  experiment: __NAME__
  registered_model: __NAME___model
  label_table: gold.__NAME___features
  label_column: label
__TRAIN__
predict:
  output_table: gold.__NAME___predictions
__PREDICT__"""

_SQL = """\
-- Silver __NAME__ events: typed, deduplicated; rows breaking a rule get a _rejected_reason and go to the
-- quarantine table (silver.__NAME___cleaned_quarantine) instead of silver.__NAME___cleaned.
WITH typed AS (
    SELECT
        CAST(event_id AS BIGINT) AS event_id,
        CAST(entity_id AS BIGINT) AS entity_id,
        CAST(CAST(event_time AS TIMESTAMP) AS TIMESTAMP_NTZ) AS event_time,
        CAST(amount AS DOUBLE) AS amount
    FROM iceberg.bronze.__NAME___events
),

ranked AS (
    SELECT *, ROW_NUMBER() OVER (PARTITION BY event_id ORDER BY event_time DESC NULLS LAST) AS copy_rank
    FROM typed
)

SELECT
    event_id,
    entity_id,
    event_time,
    amount,
    CASE
        WHEN event_id IS NULL THEN 'null_event_id'
        WHEN entity_id IS NULL THEN 'null_entity_id'
        WHEN event_time IS NULL THEN 'invalid_event_time'
        WHEN copy_rank > 1 THEN 'duplicate'
    END AS _rejected_reason
FROM ranked
"""

_DBT_PROJECT = """\
# Gold layer of the __NAME__ pipeline, rendered by Cosmos as the `gold` task group of its DAG.
name: __NAME__
version: "1.0.0"
config-version: 2
profile: asgard

model-paths: ["models"]
macro-paths: ["macros"]
target-path: target
clean-targets: [target]

vars:
  # Snapshot date (YYYY-MM-DD); the DAG passes the run's data_interval_end.
  as_of: null
  # The label looks at the entity's events in [snapshot, snapshot + horizon).
  label_horizon_days: 30

models:
  __NAME__:
    gold:
      +schema: gold
"""

_PROFILES = """\
# No secrets here: credentials come from the environment.
asgard:
  target: "{{ env_var('ASGARD_DBT_TARGET', 'duckdb') }}"
  outputs:
    duckdb:
      type: duckdb
      path: ":memory:"
      threads: 1
      external_root: "{{ env_var('ASGARD_HOME', '.asgard') }}/dbt/external"
      # DuckDB's limits and spill folder, from the dbt stage (docs/config.md); set once, when the database opens.
      config_options:
        memory_limit: "{{ env_var('ASGARD_DBT_DUCKDB_MEMORY_LIMIT', '2GB') }}"
        threads: "{{ env_var('ASGARD_DBT_DUCKDB_THREADS', '2') | int }}"
        temp_directory: >-
          {{ env_var('ASGARD_DBT_DUCKDB_TEMP_DIRECTORY', env_var('ASGARD_HOME', '.asgard') ~ '/dbt/spill') }}
      plugins:
        - module: asgard_provider.dbt.duckdb_plugin
          alias: asgard_iceberg
          config:
            iceberg_conn_id: "{{ env_var('ASGARD_ICEBERG_CONN_ID', 'asgard_iceberg_default') }}"
    trino:
      type: trino
      method: "{{ env_var('ASGARD_TRINO_AUTH', 'none') }}"
      user: "{{ env_var('ASGARD_TRINO_USER', 'asgard') }}"
      password: "{{ env_var('ASGARD_TRINO_PASSWORD', '') }}"
      host: "{{ env_var('ASGARD_TRINO_HOST', 'trino.asgard.svc.cluster.local') }}"
      port: "{{ env_var('ASGARD_TRINO_PORT', '8080') | int }}"
      http_scheme: "{{ env_var('ASGARD_TRINO_HTTP_SCHEME', 'http') }}"
      database: iceberg
      schema: gold
      threads: 4
"""

_SOURCES = """\
version: 2

sources:
  - name: silver
    database: "{{ 'iceberg' if target.type == 'trino' else target.database }}"
    schema: silver
    meta: {plugin: asgard_iceberg, materialization: view}
    tables:
      - name: __NAME___cleaned
        meta: {iceberg_table: silver.__NAME___cleaned}
"""

_MACROS = """\
{# Iceberg namespaces are the schemas: a model's custom schema is used as-is. #}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {{- custom_schema_name if custom_schema_name else target.schema -}}
{%- endmacro %}

{# var('as_of') checked as YYYY-MM-DD. #}
{% macro asgard_as_of() -%}
    {%- set value = var('as_of') -%}
    {%- if not execute -%}{{ return('1970-01-01') }}{%- endif -%}
    {%- if value is none or not modules.re.match('^\\d{4}-\\d{2}-\\d{2}$', value | string) -%}
        {{ exceptions.raise_compiler_error("var 'as_of' must be a date YYYY-MM-DD, got " ~ (value | string)) }}
    {%- endif -%}
    {{- return(value | string) -}}
{%- endmacro %}

{% macro asgard_gold_materialization() -%}
    {{- return('external' if target.type == 'duckdb' else 'incremental') -}}
{%- endmacro %}
"""

_MODEL = """\
{#
  One row per (entity, snapshot): features from events strictly before the snapshot, and `label` from the
  entity's events in [snapshot, snapshot + horizon): __LABEL_DOC__.
  Each run rebuilds the snapshots `as_of` (unlabelled, scored) and `as_of - horizon` (labelled, trained on),
  replacing those snapshot_date partitions.
#}
{{ config(
    materialized=asgard_gold_materialization(),
    plugin='asgard_iceberg',
    format='parquet',
    location=(target.external_root | default('.')) ~ '/__NAME___features-' ~ invocation_id ~ '.parquet',
    iceberg_table='gold.__NAME___features',
    iceberg_partition_by=['snapshot_date'],
    iceberg_replace_column='snapshot_date',
    incremental_strategy='delete+insert',
    unique_key='snapshot_date',
    properties={'partitioning': "ARRAY['snapshot_date']"},
) }}

{%- set as_of = asgard_as_of() -%}
{%- set horizon = var('label_horizon_days') | int -%}
{%- set as_of_date = "cast('" ~ as_of ~ "' as date)" -%}

with snapshots as (
    select {{ as_of_date }} as snapshot_date, cast(null as date) as label_until
    union all
    select cast({{ dbt.dateadd('day', -horizon, as_of_date) }} as date), {{ as_of_date }}
),

events as (
    select entity_id, cast(event_time as date) as event_date, amount
    from {{ source('silver', '__NAME___cleaned') }}
),

history as (
    select
        s.snapshot_date,
        s.label_until,
        e.entity_id,
        sum(case when e.event_date >= {{ dbt.dateadd('day', -30, 's.snapshot_date') }} then 1 else 0 end) as events_30d,
        sum(case when e.event_date >= {{ dbt.dateadd('day', -30, 's.snapshot_date') }} then e.amount else 0 end)
            as amount_30d,
        max(e.event_date) as last_event_date
    from snapshots as s
    inner join events as e on e.event_date < s.snapshot_date
    group by s.snapshot_date, s.label_until, e.entity_id
),

future as (
    select s.snapshot_date, e.entity_id, count(*) as future_events, sum(e.amount) as future_amount
    from snapshots as s
    inner join events as e on e.event_date >= s.snapshot_date and e.event_date < s.label_until
    group by s.snapshot_date, e.entity_id
)

select
    h.entity_id,
    h.snapshot_date,
    cast(h.snapshot_date as timestamp) as feature_timestamp,
    cast(h.events_30d as bigint) as events_30d,
    cast(h.amount_30d as double) as amount_30d,
    cast({{ dbt.datediff('h.last_event_date', 'h.snapshot_date', 'day') }} as bigint) as days_since_last_event,
__LABEL__
from history as h
left join future as f on f.snapshot_date = h.snapshot_date and f.entity_id = h.entity_id
"""

_MODEL_YAML = """\
version: 2

models:
  - name: __NAME___features
    description: >
      Features per entity and snapshot date and the label. `asgard validate` checks the pipeline's features,
      dtypes, key, timestamp and label against these columns: keep the list complete.
    columns:
      - {name: entity_id, data_type: bigint}
      - {name: snapshot_date, data_type: date}
      - {name: feature_timestamp, data_type: timestamp}
      - {name: events_30d, data_type: bigint}
      - {name: amount_30d, data_type: double}
      - {name: days_since_last_event, data_type: bigint}
      - {name: label, data_type: __LABEL_TYPE__}
"""

_TRAINING = '''\
"""Train the __NAME__ model (__TASK__): a random forest on the Feast features of gold.__NAME___features.

Run by MLflowTrainOperator: it starts the MLflow run, passes the context, checks that the logged model fits the
task, computes the holdout metrics the script does not log itself, gates and registers the model.
"""

from __future__ import annotations

import mlflow
from sklearn.ensemble import __MODEL_CLASS__
__METRIC_IMPORTS__
from asgard_provider.training import TrainingContext

DEFAULTS = {"n_estimators": 100, "max_depth": 8, "random_state": 42}


def main() -> None:
    ctx = TrainingContext.from_env()
    params = {**DEFAULTS, **ctx.params}
    train, holdout = ctx.split(ctx.training_frame())
    x_train, y_train = train[ctx.feature_columns].astype("float64"), train[ctx.label_column].astype("__LABEL_DTYPE__")
    with mlflow.start_run():
        mlflow.log_params({"model_type": "__MODEL_CLASS__", **params, "train_rows": len(train)})
        model = __MODEL_CLASS__(**params)
        model.fit(x_train, y_train)
__METRICS__        ctx.log_datasets(train, holdout)  # the holdout metrics of the task type are computed from these
        # skops (MLflow's safe format) loads a tree model only when its node storage is trusted (docs/build-your-own.md)
        ctx.log_sklearn_model(model, x_train, trusted_types=["sklearn.tree._tree.Tree"])


if __name__ == "__main__":
    main()
'''

_DAG = '''\
"""Airflow DAG for the __NAME__ pipeline, built from include/pipelines/__NAME__.yaml."""

# Imported from airflow.providers.asgard so the DAG processor pre-imports the factory once, not in every parse.
from airflow.providers.asgard import dag_from_file

dag = dag_from_file(__file__)
'''


#: The ingest ``source:`` each ``asgard new pipeline --source KIND`` writes (credentials stay in connections).
SOURCE_TEMPLATES = {
    "file": """\
    # A file export (JSON lines, CSV or Parquet; a glob reads several files into one snapshot).
    source: {path: "${ASGARD_HOME}/sources/__NAME__.jsonl", format: jsonl}
""",
    "sql": """\
    # A database table (PostgreSQL, MySQL/MariaDB, SQLite); the connection holds host, user and password.
    source: {connection: __NAME___db, table: public.__NAME___events, exclude_columns: []}
""",
    "rest": """\
    # A JSON REST API: the http connection holds the base URL and the token (extra {"auth": "bearer"}).
    source:
      connection: __NAME___api
      resource: events
      record_path: data
      pagination: {style: page_number, page_param: page, size_param: per_page, size: 1000}
""",
    "s3": """\
    # Objects in S3 or an S3-compatible store; the aws connection holds the keys (extra endpoint_url, region_name).
    source: {path: "s3://__NAME__-exports/events/*.parquet", format: parquet, connection: __NAME___s3}
""",
}


#: The binary training script logs its own holdout metrics (the others leave them to the training task).
_BINARY_METRICS = """\
        x_test, y_test = holdout[ctx.feature_columns].astype("float64"), holdout[ctx.label_column]
        proba = model.predict_proba(x_test)[:, list(model.classes_).index(1)]
        mlflow.log_metrics(
            {"roc_auc": roc_auc_score(y_test, proba), "accuracy": accuracy_score(y_test, (proba >= 0.5).astype(int))}
        )
"""

#: What ``asgard new pipeline --task TYPE`` varies: the label, its check, the model, the gate and the predictions.
TASK_TEMPLATES: dict[str, dict[str, str]] = {
    "binary_classification": {
        "__LABEL_DOC__": "1 when it has an event then, else 0",
        "__LABEL__": """    cast(case
        when h.label_until is null then null
        when f.future_events is null then 0
        else 1
    end as integer) as label""",
        "__LABEL_TYPE__": "integer",
        "__LABEL_CHECK__": "      accepted_values: {label: [0, 1]}\n",
        "__TRAIN__": """  task: binary_classification
  hyperparameters: {n_estimators: 100, max_depth: 8}
  min_metrics: {roc_auc: 0.6}
""",
        "__PREDICT__": """  prediction_column: __NAME___probability
  thresholds: {high: 0.7, medium: 0.4}
""",
        "__MODEL_CLASS__": "RandomForestClassifier",
        "__LABEL_DTYPE__": "int64",
        "__METRIC_IMPORTS__": "from sklearn.metrics import accuracy_score, roc_auc_score\n",
        "__METRICS__": _BINARY_METRICS,
    },
    "multiclass_classification": {
        "__LABEL_DOC__": "its activity class, 0 (no event), 1 (one or two events) or 2 (three or more)",
        "__LABEL__": """    cast(case
        when h.label_until is null then null
        when f.future_events is null then 0
        when f.future_events < 3 then 1
        else 2
    end as integer) as label""",
        "__LABEL_TYPE__": "integer",
        "__LABEL_CHECK__": "      accepted_values: {label: [0, 1, 2]}\n",
        "__TRAIN__": """  task: multiclass_classification
  hyperparameters: {n_estimators: 100, max_depth: 8}
  min_metrics: {macro_f1: 0.3}
""",
        "__PREDICT__": """  class_column: __NAME___class
  probability_prefix: probability_class_
""",
        "__MODEL_CLASS__": "RandomForestClassifier",
        "__LABEL_DTYPE__": "int64",
        "__METRIC_IMPORTS__": "",
        "__METRICS__": "",
    },
    "regression": {
        "__LABEL_DOC__": "the sum of their amounts (0 without events)",
        "__LABEL__": """    cast(case
        when h.label_until is null then null
        else coalesce(f.future_amount, 0)
    end as double) as label""",
        "__LABEL_TYPE__": "double",
        "__LABEL_CHECK__": "",
        "__TRAIN__": """  task: regression
  hyperparameters: {n_estimators: 100, max_depth: 8}
  min_metrics: {r2: 0.0}
""",
        "__PREDICT__": """  prediction_column: __NAME___amount_next_30d
""",
        "__MODEL_CLASS__": "RandomForestRegressor",
        "__LABEL_DTYPE__": "float64",
        "__METRIC_IMPORTS__": "",
        "__METRICS__": "",
    },
}


def scaffold_files(name: str, source: str = "file", task: str = "binary_classification") -> dict[str, str]:
    """Relative path (``include/...`` or ``dags/...``) -> content of every file of a new pipeline ``name``."""
    if not is_name(name, _MAX_LENGTH):
        raise PipelineConfigError(
            name,
            [
                "pipeline name: use lowercase letters, digits and underscores, starting with a letter "
                f"(at most {_MAX_LENGTH} characters, so that {name}{_LONGEST_SUFFIX} fits {NAME_MAX_LENGTH})"
            ],
        )
    files = {
        f"include/pipelines/{_PLACEHOLDER}.yaml": _PIPELINE,
        f"include/sql/{_PLACEHOLDER}/{_PLACEHOLDER}_cleaned.sql": _SQL,
        f"include/dbt/{_PLACEHOLDER}/dbt_project.yml": _DBT_PROJECT,
        f"include/dbt/{_PLACEHOLDER}/profiles.yml": _PROFILES,
        f"include/dbt/{_PLACEHOLDER}/models/sources.yml": _SOURCES,
        f"include/dbt/{_PLACEHOLDER}/models/gold/{_PLACEHOLDER}_features.sql": _MODEL,
        f"include/dbt/{_PLACEHOLDER}/models/gold/{_PLACEHOLDER}_features.yml": _MODEL_YAML,
        f"include/dbt/{_PLACEHOLDER}/macros/asgard.sql": _MACROS,
        f"include/training/{_PLACEHOLDER}_training.py": _TRAINING,
        f"dags/{_PLACEHOLDER}.py": _DAG,
    }
    if source not in SOURCE_TEMPLATES:
        raise PipelineConfigError(name, [f"--source {source!r}: use one of {', '.join(SOURCE_TEMPLATES)}"])
    if task not in TASK_TEMPLATES:
        raise PipelineConfigError(name, [f"--task {task!r}: use one of {', '.join(TASK_TEMPLATES)}"])
    parts = {"__SOURCE__": SOURCE_TEMPLATES[source], "__TASK__": task, **TASK_TEMPLATES[task]}
    files = {path: _fill(text, parts) for path, text in files.items()}
    return {path.replace(_PLACEHOLDER, name): text.replace(_PLACEHOLDER, name) for path, text in files.items()}


def _fill(text: str, parts: dict[str, str]) -> str:
    for placeholder, part in parts.items():
        text = text.replace(placeholder, part)
    return text


def create_pipeline(
    name: str, include: Path, dags: Path, source: str = "file", task: str = "binary_classification"
) -> list[Path]:
    """Write the scaffold of ``name`` under ``include``/``dags``; refuse to overwrite any existing file."""
    planned = []
    for rel, text in scaffold_files(name, source, task).items():
        top, rest = rel.split("/", 1)
        planned.append(((include if top == "include" else dags) / rest, text))
    existing = [str(path) for path, _ in planned if path.exists()]
    if existing:
        raise PipelineConfigError(name, [f"{path} already exists; pick another name or remove it" for path in existing])
    for path, text in planned:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return [path for path, _ in planned]
