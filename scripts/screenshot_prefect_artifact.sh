#!/usr/bin/env bash
# Screenshot the Prefect UI showing a pipeline run's verdict artifact, as a person sees it.
#   bash scripts/screenshot_prefect_artifact.sh [OUT_DIR]
#   -> OUT_DIR/prefect-artifact.png (the artifact's page: the verdict as markdown) and OUT_DIR/prefect-flow-run.png
#      (the run's page: its graph marks the artifact on the publish_verdict task) and OUT_DIR/prefect-artifacts.png
# It starts a Prefect server of its own on a free port (its database in a temporary PREFECT_HOME),
# runs a tiny pipeline (`cappuccino run`, a 180-day synthetic market, 2 + 6 trials; a few minutes)
# against it in a temporary Cappuccino home (CAPPUCCINO_HOME to reuse one), takes the screenshots in
# headless Chromium (Debian's `chromium`: apt-get update && apt-get install -y chromium) and stops the
# server; its work folder (logs, home, Prefect database) is kept and printed. PYTHON names the
# interpreter with Cappuccino installed (default .venv/bin/python).
# Open the PNGs and look at them: the artifact's markdown must start with the verdict line.
set -euo pipefail
cd "$(dirname "$0")/.."
out="$(mkdir -p "${1:-.}" && cd "${1:-.}" && pwd)"
python="${PYTHON:-.venv/bin/python}"
browser="$(command -v chromium || command -v chromium-browser || true)"
[[ -n "$browser" ]] || { echo "chromium is not installed: apt-get update && apt-get install -y chromium" >&2; exit 2; }
work="$(mktemp -d -t cappuccino-prefect-shot-XXXXXX)"
export PREFECT_HOME="$work/prefect" CAPPUCCINO_HOME="${CAPPUCCINO_HOME:-$work/home}" CAPPUCCINO_CONFIG="$work/absent.toml"
export PREFECT_SERVER_ANALYTICS_ENABLED=false MLFLOW_DISABLE_TELEMETRY=true DO_NOT_TRACK=true
port="$("$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
export PREFECT_API_URL="http://127.0.0.1:$port/api" PREFECT_UI_API_URL="http://127.0.0.1:$port/api"
export PREFECT_UI_URL="http://127.0.0.1:$port"

set -m  # the server in its own process group, so stopping it stops its children too
"$python" -m prefect server start --host 127.0.0.1 --port "$port" > "$work/server.log" 2>&1 &
server=$!
trap 'kill -TERM -- "-$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true' EXIT
for _ in $(seq 120); do
  curl -fsS "$PREFECT_API_URL/health" > /dev/null 2>&1 && break
  kill -0 "$server" 2>/dev/null || { echo "the Prefect server stopped; its log: $work/server.log" >&2; exit 1; }
  sleep 1
done
curl -fsS "$PREFECT_API_URL/health" > /dev/null || { echo "the Prefect server did not answer in 120 s" >&2; exit 1; }

# The pipeline's tiny budget (the flow test's): settings from the environment, one run named `shot`.
export CAPPUCCINO_SOURCE=synthetic CAPPUCCINO_HISTORY_DAYS=180 CAPPUCCINO_SYNTHETIC_PLANT_STRENGTH=2.0 \
  CAPPUCCINO_HOLDOUT_WEEKS=3 CAPPUCCINO_REPLAY_WEEKS=1 CAPPUCCINO_SEARCH_INTERVALS=1h CAPPUCCINO_SEARCH_LOOKBACKS=10,20 \
  CAPPUCCINO_TIMEFRAME_TRIALS=2 CAPPUCCINO_TIMEFRAME_STEPS=5120 CAPPUCCINO_TRAIN_TRIALS=6 CAPPUCCINO_TRAIN_STEPS=40960 \
  CAPPUCCINO_TRAIN_FOLDS=1 CAPPUCCINO_TRAIN_ENVS=64 CAPPUCCINO_PRUNE_TRIALS=false CAPPUCCINO_CANDIDATES=6
"$python" -m cappuccino_core.cli run --name shot > "$work/pipeline.log" 2>&1 \
  || { echo "the pipeline failed; its log: $work/pipeline.log" >&2; exit 1; }

ids="$("$python" - <<'EOF'
import json, os, urllib.request
api = os.environ["PREFECT_API_URL"]
body = json.dumps({"artifacts": {"key": {"any_": ["pipeline-shot"]}}, "sort": "CREATED_DESC", "limit": 1}).encode()
request = urllib.request.Request(f"{api}/artifacts/filter", data=body, headers={"Content-Type": "application/json"})
found = json.load(urllib.request.urlopen(request))
if not found:
    raise SystemExit("no artifact pipeline-shot on the server")
print(found[0]["id"], found[0]["flow_run_id"])
EOF
)"
read -r artifact flow_run <<< "$ids"

shot() {  # shot NAME URL
  "$browser" --headless --no-sandbox --disable-gpu --hide-scrollbars --virtual-time-budget=15000 \
    --window-size=1400,1000 --screenshot="$out/$1" "$2" 2>/dev/null
  [[ -s "$out/$1" ]] || { echo "chromium wrote no screenshot $out/$1" >&2; exit 1; }
  echo "$out/$1"
}
shot prefect-artifact.png "$PREFECT_UI_URL/artifacts/artifact/$artifact"
shot prefect-flow-run.png "$PREFECT_UI_URL/runs/flow-run/$flow_run"
shot prefect-artifacts.png "$PREFECT_UI_URL/artifacts"  # every key: pipeline-shot and the subflow's tournament-main
echo "work folder (logs, home): $work"
