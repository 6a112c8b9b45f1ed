#!/usr/bin/env bash
# make bench-live (root): live capture at full rate. Two network namespaces
# this script creates, joined by a veth pair (never the host's interfaces):
# tcpreplay sends PCAP (make bench-data: 1,000,000 packets of Modbus/TCP
# polling) into one end, at top speed and at each rate of RATES (packets/s),
# and the real daemon (plcwatch run, default rules, embedded broker, all
# inside the second namespace) captures on the other end. Per rate it
# reports the kernel's and the pipeline's drops, the events decoded against
# plcwatch replay of the same file (they must be equal when nothing was
# dropped), packets/s sent, and the daemon's CPU (utime + stime from /proc)
# over the send. The daemon restarts for each rate (the same TCP connections
# again would be retransmissions to one that remembers them). The namespaces
# are deleted on exit, whatever happens.
#
#   PCAP=.bench/poll-1m.pcap RATES="topspeed 100000 200000" FANOUT=1 bash sim/bench-live.sh
set -euo pipefail
BIN=${BIN:-bin/plcwatch}
PCAP=${PCAP:-.bench/poll-1m.pcap}
RATES=${RATES:-topspeed 50000 100000 200000}
FANOUT=${FANOUT:-1}
RING_BLOCKS=${RING_BLOCKS:-32}
PORTS=${PORTS:-502}

[ "$(id -u)" = 0 ] || { echo "bench-live needs root (network namespaces, AF_PACKET)"; exit 1; }
command -v tcpreplay >/dev/null || { echo "tcpreplay not installed (apt-get install -y tcpreplay)"; exit 1; }
[ -f "$PCAP" ] || { echo "$PCAP missing: make bench-data"; exit 1; }

tag=pw$$
nsa=$tag-send nsb=$tag-cap
veta=${tag}a vetb=${tag}b
dir=$(mktemp -d)
cleanup() {
  kill $(jobs -p) 2>/dev/null || true
  wait 2>/dev/null || true
  ip netns del "$nsa" 2>/dev/null || true
  ip netns del "$nsb" 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT INT TERM

ip netns add "$nsa"
ip netns add "$nsb"
ip link add "$veta" netns "$nsa" type veth peer name "$vetb" netns "$nsb"
for ns in "$nsa" "$nsb"; do ip -n "$ns" link set lo up; done
ip -n "$nsa" link set "$veta" up
ip -n "$nsb" link set "$vetb" up

# What the file holds, decoded offline: the events live capture must match.
read -r want_packets want_events < <("$BIN" replay --pcap "$PCAP" --modbus-ports "$PORTS" 2>&1 >/dev/null |
  sed -n 's/.*packets=\([0-9]*\) .* events=\([0-9]*\) .*/\1 \2/p')
echo "file: $PCAP: $want_packets packets, $want_events events (plcwatch replay)"
echo "fanout=$FANOUT ring=$RING_BLOCKS x 1 MiB per worker; $(nproc) cores; $(uptime | sed 's/.*load/load/')"

cat >"$dir/plcwatch.yaml" <<EOF
site: bench
gateway: gw-bench
log: {level: warn}
capture: {interfaces: [$vetb], promiscuous: true, modbus_ports: [$PORTS], fanout: $FANOUT, ring_blocks: $RING_BLOCKS}
rules: {paths: [$PWD/configs/rules]}
mqtt: {embedded: {listen: 127.0.0.1:1883}, heartbeat: 0s}
spool: {dir: $dir/spool}
http: {listen: 127.0.0.1:9108}
EOF

inb() { ip netns exec "$nsb" "$@"; }
metric() { inb curl -s 127.0.0.1:9108/metrics | awk -v m="$1" 'index($0, m) == 1 {s += $NF} END {printf "%d\n", s}'; }

printf '%-9s %10s %10s %10s %9s %9s %9s %9s %12s\n' rate sent/s captured kernel kdrops pdrops events want cpu
for rate in $RATES; do
  rm -rf "$dir/spool"
  # ip netns exec execs plcwatch: $! is the daemon's pid.
  ip netns exec "$nsb" "$BIN" run --config "$dir/plcwatch.yaml" 2>"$dir/daemon.log" &
  pid=$!
  for _ in $(seq 100); do
    [ "$(inb curl -s -o /dev/null -w '%{http_code}' 127.0.0.1:9108/readyz 2>/dev/null)" = 200 ] && break
    kill -0 $pid 2>/dev/null || { cat "$dir/daemon.log"; exit 1; }
    sleep 0.1
  done
  ticks0=$(awk '{print $14 + $15}' /proc/$pid/stat)
  t0=$(date +%s.%N)
  if [ "$rate" = topspeed ]; then speed=--topspeed; else speed=--pps=$rate; fi
  sent=$(ip netns exec "$nsa" tcpreplay -i "$veta" $speed "$PCAP" 2>&1 | sed -n 's/.*Rated: [0-9.]* Bps, [0-9.]* Mbps, \([0-9.]*\) pps.*/\1/p')
  # Let the daemon finish what is in the ring, and requests left without a
  # response time out (capture.response_timeout, 5 s) as replay's do at
  # the end of the file.
  last=-1
  for _ in $(seq 60); do
    now=$(metric plcwatch_capture_packets_total)
    [ "$now" = "$last" ] && break
    last=$now
    sleep 0.5
  done
  ticks1=$(awk '{print $14 + $15}' /proc/$pid/stat)
  t1=$(date +%s.%N)
  sleep 6
  captured=$(metric plcwatch_capture_packets_total)
  kernel=$(metric plcwatch_capture_kernel_packets_total)
  kdrops=$(metric plcwatch_capture_kernel_drops_total)
  pdrops=$(metric plcwatch_pipeline_drops_total)
  events=$(metric plcwatch_events_total)
  cpu=$(awk -v t=$((ticks1 - ticks0)) -v hz="$(getconf CLK_TCK)" -v w="$(echo "$t1 - $t0" | bc)" 'BEGIN {printf "%.1fs/%.1fs", t / hz, w}')
  printf '%-9s %10.0f %10d %10d %9d %9d %9d %9d %12s\n' "$rate" "${sent:-0}" "$captured" "$kernel" "$kdrops" "$pdrops" "$events" "$want_events" "$cpu"
  kill -TERM $pid
  wait $pid 2>/dev/null || true
done
echo "sent/s: tcpreplay's rate; captured: packets the engine decoded; kernel: packets the filter passed,"
echo "dropped ones included (kdrops: the ring was full); pdrops: events dropped before the rules; cpu: the daemon's"
echo "user + system time / wall time from the first packet sent to the last one decoded (the last 0.5 s"
echo "idle included). events must equal want when kdrops and pdrops are 0."
