#!/usr/bin/env bash
# make demo: the daemon on embedded defaults (configs/demo), polling three
# simulated boilers and a chiller that stops answering after a few seconds,
# for DEMO_SECONDS (default 30). Alerts are printed as they are raised by
# plcwatch alerts, subscribed to the daemon's embedded broker; Ctrl-C ends
# it early.
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

# wait_for TRIES COMMAND...: run COMMAND every 0.1 s until it succeeds.
wait_for() {
	local n=$1
	shift
	for _ in $(seq "$n"); do "$@" 2>/dev/null && return 0; sleep 0.1; done
	return 1
}

echo "== three simulated Modbus/TCP boilers on 127.0.0.1:15020-15022 and a chiller on 127.0.0.1:15029 (plcwatch sim modbus)"
"$BIN" sim modbus --devices 3 --tags 2 --listen 127.0.0.1:15020 --tick 200ms 2>"$dir/sim.log" &
"$BIN" sim modbus --devices 1 --tags 1 --listen 127.0.0.1:15029 2>"$dir/sim-chiller.log" &
chiller=$!
sleep 0.5
echo "== plcwatch run --config configs/demo/plcwatch.yaml: embedded MQTT broker on 127.0.0.1:18830,"
echo "   metrics on 127.0.0.1:19108; subscribe with: mosquitto_sub -p 18830 -t 'plcwatch/#' -v"
"$BIN" run --config "$dir/plcwatch.yaml" 2>"$dir/daemon.log" &
daemon=$!
wait_for 100 bash -c 'exec 3<>/dev/tcp/127.0.0.1/18830' || { echo "the embedded broker did not start:"; cat "$dir/daemon.log"; exit 1; }
echo "== alerts, as the rules in configs/demo/rules.yaml raise them, printed by"
echo "   plcwatch alerts --broker tcp://127.0.0.1:18830 (a subscriber a SOC or an operator runs against any broker):"
color=
[ -t 1 ] && color=--color
"$BIN" alerts --broker tcp://127.0.0.1:18830 --topic 'plcwatch/demo/gw-demo/alerts/#' $color 2>"$dir/alerts.log" &
wait_for 50 grep -q "subscribed to" "$dir/alerts.log" || true
# The chiller stops answering a few seconds in: the agent says so.
(sleep 5; kill "$chiller" 2>/dev/null) &
for _ in $(seq "${DEMO_SECONDS:-30}"); do
	kill -0 $daemon 2>/dev/null || { echo "plcwatch stopped:"; cat "$dir/daemon.log"; exit 1; }
	curl -s 127.0.0.1:19108/metrics >"$dir/metrics.new" 2>/dev/null && mv "$dir/metrics.new" "$dir/metrics"
	sleep 1
done
