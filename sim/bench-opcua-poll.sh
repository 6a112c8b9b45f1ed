#!/usr/bin/env bash
# make bench-opcua-poll: the daemon monitoring one OPC UA server with TAGS
# variables that all change every second (node-opcua, a separate process:
# collectors/opcua/testdata/node-opcua/server.js), on one session, first
# as monitored items at 1 s sampling and publishing (MODE=subscribe), then
# read every second (MODE=read), each measured over SECONDS_MEASURED seconds
# after WARMUP seconds: plcwatch's CPU (utime + stime from /proc, % of one
# core), RSS, events/s. Set MODES to run one of them. PPROF=true saves
# CPU and heap profiles to /tmp/opcua-<mode>-*.pb. Needs node and
# `make node-opcua`.
set -euo pipefail
BIN=${BIN:-bin/plcwatch}
TAGS=${TAGS:-10000}
SECONDS_MEASURED=${SECONDS_MEASURED:-60}
WARMUP=${WARMUP:-20}
MODES=${MODES:-subscribe read}
PORT=${PORT:-26840}
dir=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; rm -rf "$dir"' EXIT

[ -d tools/node-opcua/node_modules/node-opcua ] || { echo "node-opcua is not installed: make node-opcua" >&2; exit 1; }
mkfifo "$dir/server.in"
NODE_PATH=$PWD/tools/node-opcua/node_modules node collectors/opcua/testdata/node-opcua/server.js "$PORT" "$dir/server-pki" "$TAGS" \
  <"$dir/server.in" >"$dir/server.out" 2>"$dir/server.err" &
server=$!
exec 3>"$dir/server.in" # keeps the server's stdin open
for _ in $(seq 120); do
  grep -q '"ready":true' "$dir/server.out" 2>/dev/null && break
  kill -0 $server 2>/dev/null || { cat "$dir/server.err"; exit 1; }
  sleep 0.5
done
grep -q '"ready":true' "$dir/server.out" || { echo "node-opcua did not start" >&2; cat "$dir/server.err"; exit 1; }

ticks() { awk '{print $14 + $15}' /proc/"$1"/stat; }
metric() { curl -s 127.0.0.1:25109/metrics | awk -v m="$1" 'index($0, m) == 1 {s += $NF} END {printf "%d\n", s}'; }

for mode in $MODES; do
  {
    echo "site: bench"
    echo "gateway: gw-bench"
    echo "rules: {paths: [$PWD/configs/rules]}"
    if [ -n "${MQTT_URL:-}" ]; then
      echo "mqtt: {brokers: [$MQTT_URL], heartbeat: 0s}"
    else
      echo "mqtt: {embedded: {listen: 127.0.0.1:25884}, heartbeat: 0s}"
    fi
    echo "spool: {dir: $dir/spool-$mode}"
    echo "http: {listen: 127.0.0.1:25109, pprof: ${PPROF:-false}}"
    echo "opcua:"
    echo "  pki: {dir: $dir/pki}"
    echo "  devices:"
    echo "    - name: bench"
    echo "      endpoint: opc.tcp://127.0.0.1:$PORT"
    echo "      security: {policy: None, mode: None}"
    echo "      interval: 1s"
    echo "      timeout: 10s"
    echo "      tags:"
    for i in $(seq 0 $((TAGS - 1))); do
      echo "        - {name: v$i, node: \"nsu=urn:plcwatch:test:node-opcua;s=Var$i\", mode: $mode}"
    done
  } >"$dir/plcwatch-$mode.yaml"
  "$BIN" run --config "$dir/plcwatch-$mode.yaml" 2>"$dir/daemon-$mode.log" &
  pid=$!
  sleep 2
  kill -0 $pid 2>/dev/null || { cat "$dir/daemon-$mode.log"; exit 1; }
  sleep "$WARMUP"
  read -r t0 s0 e0 < <(echo "$(ticks $pid) $(ticks $server) $(metric plcwatch_pipeline_events_total)")
  if [ "${PPROF:-false}" = true ]; then
    curl -s "127.0.0.1:25109/debug/pprof/profile?seconds=$SECONDS_MEASURED" >/tmp/opcua-$mode-cpu.pb
    curl -s 127.0.0.1:25109/debug/pprof/heap >/tmp/opcua-$mode-heap.pb
  else
    sleep "$SECONDS_MEASURED"
  fi
  read -r t1 s1 e1 < <(echo "$(ticks $pid) $(ticks $server) $(metric plcwatch_pipeline_events_total)")
  up=$(metric 'plcwatch_poll_up{device="bench"}')
  gaps=$(metric 'plcwatch_poll_subscription_gaps_total{device="bench"}')
  connects=$(metric 'plcwatch_poll_connects_total{device="bench"}')
  echo "== $TAGS tags, mode $mode, interval 1s, one session, measured ${SECONDS_MEASURED}s after ${WARMUP}s"
  awk -v t=$((t1 - t0)) -v n=$((s1 - s0)) -v hz="$(getconf CLK_TCK)" -v s="$SECONDS_MEASURED" \
    'BEGIN {printf "plcwatch cpu: %.2f%% of one core (%.2f s over %d s); node-opcua server: %.1f%%\n", 100 * t / hz / s, t / hz, s, 100 * n / hz / s}'
  grep -E 'VmRSS|VmHWM|RssAnon|RssFile' /proc/$pid/status | tr -s ' \t' ' ' | paste -sd ' '
  awk -v e=$((e1 - e0)) -v s="$SECONDS_MEASURED" 'BEGIN {printf "events/s: %.0f\n", e / s}'
  echo "up: $up, sessions: $connects, subscription gaps: $gaps"
  curl -s 127.0.0.1:25109/metrics | grep -E '^go_memstats_(heap_inuse|heap_idle|heap_released|next_gc|stack_inuse|sys)_bytes|^go_gc_gogc|^go_gc_gomemlimit' | paste -sd ' ' 
  kill -TERM $pid
  wait $pid || true
done
echo "load: $(uptime)"
