#!/usr/bin/env bash
# Start the Prefect server with its UI and the MLflow UI together; Ctrl-C stops both.
#   bash scripts/ui.sh      (what `make ui` runs)
#   -> Prefect UI http://127.0.0.1:4200 (PREFECT_PORT), MLflow UI http://127.0.0.1:5000 (MLFLOW_PORT);
#      the Prefect UI's API URL follows PREFECT_PORT
# The Prefect server keeps its database under PREFECT_HOME (~/.prefect) unless
# PREFECT_SERVER_DATABASE_CONNECTION_URL names PostgreSQL; the MLflow UI is mlflow/ui.sh
# (Cappuccino's store, or MLFLOW_TRACKING_URI when set). If either server stops, the other is stopped too.
set -euo pipefail
cd "$(dirname "$0")/.."
export PREFECT_SERVER_ANALYTICS_ENABLED=false MLFLOW_DISABLE_TELEMETRY=true DO_NOT_TRACK=true
PREFECT_PORT="${PREFECT_PORT:-4200}"
# `--port` alone moves the server, not the UI: the UI asks PREFECT_UI_API_URL, which defaults to
# PREFECT_API_URL (a profile's 4200) or the default port. Point the UI, and clients started from
# here, at this server.
export PREFECT_SERVER_API_HOST=127.0.0.1 PREFECT_SERVER_API_PORT="$PREFECT_PORT"
export PREFECT_API_URL="http://127.0.0.1:$PREFECT_PORT/api" PREFECT_UI_API_URL="http://127.0.0.1:$PREFECT_PORT/api"
export PREFECT_UI_URL="http://127.0.0.1:$PREFECT_PORT"

set -m  # each server in its own process group: stopping a group stops the server's own children too
.venv/bin/prefect server start --host 127.0.0.1 --port "$PREFECT_PORT" &
prefect_pid=$!
bash mlflow/ui.sh &
mlflow_pid=$!

stop() {
  trap - INT TERM EXIT
  for pid in "$prefect_pid" "$mlflow_pid"; do
    kill -TERM -- "-$pid" 2>/dev/null || true  # a group already gone has nothing left to stop
  done
  wait || true
}
trap 'stop; exit 130' INT
trap 'stop; exit 143' TERM
trap stop EXIT

echo "Prefect UI: http://127.0.0.1:$PREFECT_PORT  MLflow UI: http://127.0.0.1:${MLFLOW_PORT:-5000}  (Ctrl-C stops both)"
status=0
wait -n || status=$?
echo "a UI server stopped on its own (exit $status); stopping the other" >&2
exit $(( status == 0 ? 1 : status ))  # a server that stops by itself is a failure, whatever it returned
