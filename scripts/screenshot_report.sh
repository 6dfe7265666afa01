#!/usr/bin/env bash
# Screenshot a pipeline report as a person sees it, in headless Chromium (Debian's `chromium` package).
#   bash scripts/screenshot_report.sh REPORT.html [OUT_DIR]
#   -> OUT_DIR/report-top.png (1280x1000, what opens first) and OUT_DIR/report-full.png (1280x4000, the page)
# OUT_DIR defaults to the report's folder. Install the browser with
#   apt-get update && apt-get install -y chromium
# Open the PNGs and look at them: the verdict must be the first line, the equity chart drawn with its
# legend beside the curves, the flagged figures marked.
set -euo pipefail
report="${1:?usage: screenshot_report.sh REPORT.html [OUT_DIR]}"
[[ -f "$report" ]] || { echo "no such report: $report" >&2; exit 2; }
report="$(cd "$(dirname "$report")" && pwd)/$(basename "$report")"
out="${2:-$(dirname "$report")}"
mkdir -p "$out"
browser="$(command -v chromium || command -v chromium-browser || true)"
[[ -n "$browser" ]] || { echo "chromium is not installed: apt-get update && apt-get install -y chromium" >&2; exit 2; }

shot() {  # shot NAME WIDTH HEIGHT
  "$browser" --headless --no-sandbox --disable-gpu --hide-scrollbars --virtual-time-budget=5000 \
    --window-size="$2,$3" --screenshot="$out/$1" "file://$report" 2>/dev/null
  [[ -s "$out/$1" ]] || { echo "chromium wrote no screenshot $out/$1" >&2; exit 1; }
  echo "$out/$1"
}
shot report-top.png 1280 1000
shot report-full.png 1280 4000
