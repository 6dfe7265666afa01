#!/usr/bin/env bash
# Start the MLflow tracking server and UI against Cappuccino's store (SQLite under the runtime home).
#   bash mlflow/ui.sh            -> http://127.0.0.1:5000
# MLFLOW_TRACKING_URI, if set, wins (for example a PostgreSQL URL shared by several machines).
set -euo pipefail
cd "$(dirname "$0")/.."
HOME_DIR="$(.venv/bin/python -c 'from cappuccino_core.config import load_settings; print(load_settings().home)')"
mkdir -p "$HOME_DIR/mlflow/artifacts"
BACKEND="${MLFLOW_TRACKING_URI:-sqlite:///$HOME_DIR/mlflow/mlflow.db}"
export MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false MLFLOW_DISABLE_TELEMETRY=true
exec .venv/bin/mlflow server \
  --backend-store-uri "$BACKEND" \
  --default-artifact-root "$HOME_DIR/mlflow/artifacts" \
  --host 127.0.0.1 --port "${MLFLOW_PORT:-5000}" --workers 1
