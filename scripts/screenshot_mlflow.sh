#!/usr/bin/env bash
# Screenshot the MLflow UI of a home as a person sees it, in headless Chromium (Debian's `chromium`).
#   bash scripts/screenshot_mlflow.sh OUT_DIR        (the home is CAPPUCCINO_HOME, as for every command)
#   -> OUT_DIR/mlflow-experiments.png   the experiment list (descriptions shown)
#      OUT_DIR/mlflow-training.png      the newest training study's runs (parent and trial child runs)
#      OUT_DIR/mlflow-arena.png         the arena's match runs
#      OUT_DIR/mlflow-model.png         the registered model: versions, stages, aliases
# It starts mlflow/ui.sh on a free port, waits for it, takes the shots and stops it.
# Open the PNGs and look at them.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:?usage: screenshot_mlflow.sh OUT_DIR}"
mkdir -p "$out"
browser="$(command -v chromium || command -v chromium-browser || true)"
[[ -n "$browser" ]] || { echo "chromium is not installed: apt-get update && apt-get install -y chromium" >&2; exit 2; }
port="$(.venv/bin/python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
set -m
MLFLOW_PORT="$port" bash mlflow/ui.sh >"$out/mlflow-server.log" 2>&1 &
server=$!
trap 'kill -TERM -- "-$server" 2>/dev/null || true' EXIT
for _ in $(seq 120); do
  curl -fsS "http://127.0.0.1:$port/health" >/dev/null 2>&1 && break
  sleep 1
done
curl -fsS "http://127.0.0.1:$port/health" >/dev/null || { echo "the MLflow UI did not start: $out/mlflow-server.log" >&2; exit 1; }

experiment_id() {  # experiment_id NAME -> its id, or nothing
  curl -fsS "http://127.0.0.1:$port/api/2.0/mlflow/experiments/get-by-name?experiment_name=$1" 2>/dev/null \
    | .venv/bin/python -c 'import json,sys; print(json.load(sys.stdin)["experiment"]["experiment_id"])' 2>/dev/null || true
}
shot() {  # shot NAME URL
  "$browser" --headless --no-sandbox --disable-gpu --hide-scrollbars --virtual-time-budget=15000 \
    --window-size=1500,1000 --screenshot="$out/$1" "$2" 2>/dev/null
  [[ -s "$out/$1" ]] || { echo "chromium wrote no screenshot $out/$1" >&2; exit 1; }
  echo "$out/$1"
}
base="http://127.0.0.1:$port"
shot mlflow-experiments.png "$base/#/experiments"
training="$(curl -fsS -X POST -H 'Content-Type: application/json' -d '{"max_results": 1000}' \
  "http://127.0.0.1:$port/api/2.0/mlflow/experiments/search" | .venv/bin/python -c '
import json, sys
found = [e for e in json.load(sys.stdin).get("experiments", []) if e["name"].endswith("train")]
print(max(found, key=lambda e: int(e.get("creation_time", 0)))["experiment_id"] if found else "")')"
[[ -n "$training" ]] && shot mlflow-training.png "$base/#/experiments/$training/runs"
arena="$(experiment_id arena)"
[[ -n "$arena" ]] && shot mlflow-arena.png "$base/#/experiments/$arena/runs"
shot mlflow-model.png "$base/#/models/cappuccino-ppo"
