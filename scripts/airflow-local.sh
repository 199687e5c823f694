#!/usr/bin/env bash
# Run Airflow as a deployment does, on this machine: api-server, scheduler, dag-processor and triggerer
# (LocalExecutor, PostgreSQL metadata database), with the bundle's DAGs and an MLflow tracking server whose UI
# the "MLflow run" buttons open. `make airflow` runs it; Ctrl-C (or SIGTERM) stops every component.
#
# Settings (environment): ASGARD_HOME, AIRFLOW_HOME (required); ASGARD_AIRFLOW_PORT (8080),
# ASGARD_MLFLOW_PORT (5000), ASGARD_AIRFLOW_DB (asgard_airflow), ASGARD_PG (postgresql://postgres@127.0.0.1:5432),
# ASGARD_ADMIN_PASSWORD (generated once and kept in $AIRFLOW_HOME/passwords.json), ASGARD_SUPPORT_API_PORT (8765:
# the demo's support API, started when $ASGARD_HOME/sources holds the generated tickets).
set -euo pipefail
: "${ASGARD_HOME:?set ASGARD_HOME}" "${AIRFLOW_HOME:?set AIRFLOW_HOME}"
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${BIN:-$ROOT/.venv/bin}
PORT=${ASGARD_AIRFLOW_PORT:-8080}
MLFLOW_PORT=${ASGARD_MLFLOW_PORT:-5000}
DB=${ASGARD_AIRFLOW_DB:-asgard_airflow}
SUPPORT_PORT=${ASGARD_SUPPORT_API_PORT:-8765}
export AIRFLOW_CONN_ASGARD_SUPPORT_API=${AIRFLOW_CONN_ASGARD_SUPPORT_API:-"{\"conn_type\": \"http\", \"host\": \"http://127.0.0.1:$SUPPORT_PORT\"}"}
PG=${ASGARD_PG:-postgresql://postgres@127.0.0.1:5432}
LOGS=$ASGARD_HOME/logs
mkdir -p "$LOGS" "$AIRFLOW_HOME" "$ASGARD_HOME/mlflow/artifacts"

"$BIN/python" - "$PG/postgres" "$DB" <<'PY'
import sys, psycopg2
conn = psycopg2.connect(sys.argv[1]); conn.autocommit = True
cur = conn.cursor(); cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (sys.argv[2],))
if cur.fetchone() is None:
    cur.execute(f'CREATE DATABASE "{sys.argv[2]}"')
PY

secret() { "$BIN/python" -c "import secrets; print(secrets.token_hex(16))"; }
[ -f "$AIRFLOW_HOME/asgard-secrets.env" ] || printf 'JWT=%s\nKEY=%s\n' "$(secret)" "$(secret)" > "$AIRFLOW_HOME/asgard-secrets.env"
# shellcheck disable=SC1091
. "$AIRFLOW_HOME/asgard-secrets.env"
PASSWORDS=$AIRFLOW_HOME/passwords.json
if [ -n "${ASGARD_ADMIN_PASSWORD:-}" ] || [ ! -f "$PASSWORDS" ]; then
  printf '{"admin": "%s"}\n' "${ASGARD_ADMIN_PASSWORD:-$(secret)}" > "$PASSWORDS"
  chmod 600 "$PASSWORDS"
fi

export AIRFLOW__DATABASE__SQL_ALCHEMY_CONN="postgresql+psycopg2://${PG#postgresql://}/$DB"
export AIRFLOW__CORE__EXECUTOR=LocalExecutor
export AIRFLOW__CORE__EXECUTION_API_SERVER_URL="http://127.0.0.1:$PORT/execution/"
export AIRFLOW__API__PORT=$PORT
export AIRFLOW__API__BASE_URL="http://127.0.0.1:$PORT"
export AIRFLOW__API_AUTH__JWT_SECRET=$JWT
export AIRFLOW__API__SECRET_KEY=$KEY
export AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS=admin:admin
export AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE=$PASSWORDS
export AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL=${AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL:-30}
export AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC=${AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC:-2}
export AIRFLOW__ASGARD__LOCAL_SPARK_POOL=asgard_spark
export AIRFLOW_CONN_ASGARD_MLFLOW_DEFAULT="{\"conn_type\": \"asgard_mlflow\", \"host\": \"http://127.0.0.1:$MLFLOW_PORT\"}"

"$BIN/airflow" db migrate > "$LOGS/airflow-db-migrate.log" 2>&1 || { tail -50 "$LOGS/airflow-db-migrate.log"; exit 1; }
"$BIN/airflow" pools set asgard_spark "${ASGARD_SPARK_SLOTS:-1}" "local Spark transforms: JVMs running at once" > /dev/null

pids=()
stop() { trap - INT TERM EXIT; for pid in "${pids[@]}"; do kill -TERM -- "-$pid" 2>/dev/null || true; done; wait; }
trap stop INT TERM EXIT
start() {  # name, command...: its own process group, output in $LOGS/<name>.log
  local name=$1; shift
  setsid "$@" > "$LOGS/$name.log" 2>&1 &
  pids+=($!)
}
# The schema first: the server's processes would otherwise migrate a fresh store concurrently.
"$BIN/mlflow" db upgrade "sqlite:///$ASGARD_HOME/mlflow/mlflow.db" > "$LOGS/mlflow-db-upgrade.log" 2>&1 \
  || { tail -50 "$LOGS/mlflow-db-upgrade.log"; exit 1; }
start mlflow "$BIN/mlflow" server --host 127.0.0.1 --port "$MLFLOW_PORT" \
  --backend-store-uri "sqlite:///$ASGARD_HOME/mlflow/mlflow.db" \
  --artifacts-destination "file://$ASGARD_HOME/mlflow/artifacts" --workers 1
if [ -f "$ASGARD_HOME/sources/support_tickets.jsonl" ]; then
  start support-api "$BIN/python" -m asgard_demo.support_api --sources "$ASGARD_HOME/sources" --port "$SUPPORT_PORT"
fi
start api-server "$BIN/airflow" api-server --port "$PORT"
start scheduler "$BIN/airflow" scheduler
start dag-processor "$BIN/airflow" dag-processor
start triggerer "$BIN/airflow" triggerer

for _ in $(seq 1 120); do
  (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
  sleep 1
done
cat <<EOF
Airflow UI   http://127.0.0.1:$PORT   login admin / $("$BIN/python" -c "import json,sys; print(json.load(open(sys.argv[1]))['admin'])" "$PASSWORDS")
MLflow UI    http://127.0.0.1:$MLFLOW_PORT
Logs         $LOGS/{api-server,scheduler,dag-processor,triggerer,mlflow}.log
DAGs appear within a minute; unpause one or trigger it from the UI. Ctrl-C stops everything.
EOF
wait -n "${pids[@]}" || true
echo "a component stopped; see $LOGS" >&2
