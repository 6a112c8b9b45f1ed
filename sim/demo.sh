#!/usr/bin/env bash
# make demo: the daemon on embedded defaults (configs/demo), polling three
# simulated boilers and a device that is not there, for DEMO_SECONDS
# (default 30). Alerts are printed as they are raised; Ctrl-C ends it early.
set -euo pipefail
BIN=${BIN:-bin/plcwatch}
dir=$(mktemp -d "${TMPDIR:-/tmp}/plcwatch-demo.XXXXXX")
cleanup() {
	kill $(jobs -p) 2>/dev/null || true
	wait 2>/dev/null || true
	echo
	echo "== what the agent measured (/metrics)"
	grep -E '^plcwatch_(poll_up|alerts_total|telemetry_messages_total)' "$dir/metrics" 2>/dev/null || true
	echo "== its log: $dir/daemon.log; alerts: $dir/alerts.jsonl"
}
trap cleanup EXIT
cp configs/demo/plcwatch.yaml configs/demo/rules.yaml "$dir/"

echo "== three simulated Modbus/TCP boilers on 127.0.0.1:15020-15022 (plcwatch sim modbus)"
"$BIN" sim modbus --devices 3 --tags 2 --listen 127.0.0.1:15020 --tick 200ms 2>"$dir/sim.log" &
sleep 0.5
echo "== plcwatch run --config configs/demo/plcwatch.yaml: embedded MQTT broker on 127.0.0.1:18830,"
echo "   metrics on 127.0.0.1:19108; subscribe with: mosquitto_sub -p 18830 -t 'plcwatch/#' -v"
"$BIN" run --config "$dir/plcwatch.yaml" 2>"$dir/daemon.log" &
daemon=$!
echo "== alerts, as the rules in configs/demo/rules.yaml raise them:"
touch "$dir/alerts.jsonl"
tail -n +1 -F "$dir/alerts.jsonl" 2>/dev/null | sed -E -u \
	's/.*"rule":\{"id":"([^"]+)","title":"[^"]*","severity":"([a-z]+)".*"device":"([^"]+)"(.*"tag":"([^"]+)","value":([^,]+))?.*"count":([0-9]+)(,"message":"([^"]*)")?.*/  \2\t\1\t\3 \5 \6\t\9/' &
for _ in $(seq "${DEMO_SECONDS:-30}"); do
	kill -0 $daemon 2>/dev/null || { echo "plcwatch stopped:"; cat "$dir/daemon.log"; exit 1; }
	curl -s 127.0.0.1:19108/metrics >"$dir/metrics.new" 2>/dev/null && mv "$dir/metrics.new" "$dir/metrics"
	sleep 1
done
