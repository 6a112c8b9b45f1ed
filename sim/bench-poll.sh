#!/usr/bin/env bash
# make bench-poll: the daemon polling DEVICES simulated devices × TAGS tags
# at a 1 s interval (plcwatch sim modbus, a separate process), measured over
# SECONDS_MEASURED seconds after a 10 s warm-up: CPU (utime + stime from
# /proc), RSS, and requests per cycle against the planner's count. Alerts go
# to MQTT_URL when set, else to the embedded broker. PPROF=true also saves
# CPU and heap profiles to /tmp/poll-*.pb.
set -euo pipefail
BIN=${BIN:-bin/plcwatch}
DEVICES=${DEVICES:-100}
TAGS=${TAGS:-100}
SECONDS_MEASURED=${SECONDS_MEASURED:-60}
dir=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; rm -rf "$dir"' EXIT

"$BIN" sim modbus --devices "$DEVICES" --tags "$TAGS" --listen 127.0.0.1:26000 --config "$dir/devices.yaml" 2>"$dir/sim.log" &
sleep 1
{
  echo "site: bench"
  echo "gateway: gw-bench"
  echo "rules: {paths: [$PWD/configs/rules]}"
  if [ -n "${MQTT_URL:-}" ]; then
    echo "mqtt: {brokers: [$MQTT_URL], heartbeat: 0s}"
  else
    echo "mqtt: {embedded: {listen: 127.0.0.1:25883}, heartbeat: 0s}"
  fi
  echo "spool: {dir: $dir/spool}"
  echo "http: {listen: 127.0.0.1:25108, pprof: ${PPROF:-false}}"
  cat "$dir/devices.yaml"
} >"$dir/plcwatch.yaml"
"$BIN" run --config "$dir/plcwatch.yaml" 2>"$dir/daemon.log" &
pid=$!
sleep 2
kill -0 $pid 2>/dev/null || { cat "$dir/daemon.log"; exit 1; }
sleep 10 # every device connected and in its cadence

ticks() { awk '{print $14 + $15}' /proc/$pid/stat; }
metric() { curl -s 127.0.0.1:25108/metrics | awk -v m="$1" 'index($0, m) == 1 {s += $NF} END {printf "%d\n", s}'; }
snapshot() {
  echo "$(ticks) $(metric 'plcwatch_poll_cycles_total{') $(metric plcwatch_poll_requests_total)" \
    "$(metric plcwatch_pipeline_events_total) $(metric go_memstats_alloc_bytes_total)"
}
read -r t0 c0 r0 e0 a0 < <(snapshot)
if [ "${PPROF:-false}" = true ]; then
  curl -s "127.0.0.1:25108/debug/pprof/profile?seconds=$SECONDS_MEASURED" >/tmp/poll-cpu.pb
  curl -s 127.0.0.1:25108/debug/pprof/heap >/tmp/poll-heap.pb
else
  sleep "$SECONDS_MEASURED"
fi
read -r t1 c1 r1 e1 a1 < <(snapshot)
planned=$(metric plcwatch_poll_planned_requests)
failed=$(metric 'plcwatch_poll_cycles_total{device="sim-000",result="failed"}')

echo "devices=$DEVICES tags=$TAGS interval=1s measured=${SECONDS_MEASURED}s"
awk -v t=$((t1 - t0)) -v hz="$(getconf CLK_TCK)" -v s="$SECONDS_MEASURED" \
  'BEGIN {printf "cpu: %.2f%% of one core (%.2f s over %d s)\n", 100 * t / hz / s, t / hz, s}'
grep -E 'VmRSS|VmHWM|RssAnon|RssFile' /proc/$pid/status | tr -s ' \t' ' ' | paste -sd ' '
awk -v c=$((c1 - c0)) -v r=$((r1 - r0)) -v e=$((e1 - e0)) -v p="$planned" -v d="$DEVICES" -v s="$SECONDS_MEASURED" \
  'BEGIN {printf "cycles: %d, requests: %d, requests per device cycle: %.3f, planned: %.3f, events/s: %.0f\n", c, r, r / c, p / d, e / s}'
awk -v a=$((a1 - a0)) -v s="$SECONDS_MEASURED" 'BEGIN {printf "allocated: %.0f KB/s\n", a / 1024 / s}'
echo "failed cycles (sim-000): $failed"
kill -TERM $pid
wait $pid || true
