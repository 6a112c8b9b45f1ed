#!/usr/bin/env bash
# make demo: the demo plant of configs/scenarios/demo.yaml (a tank PLC and a
# boiler PLC, an HMI, ten attackers, each from its own 127.0.0.x address),
# watched by plcwatch run on embedded defaults (configs/demo): it polls both
# PLCs and inspects their Modbus/TCP traffic — live on lo when root, else
# by replaying the scenario's recording as it is made. Every alert is
# printed as one line as it arrives; after the scenario (DEMO_SECONDS,
# default 60; below 30 the demo-new-writer rule is still learning when the
# intruder writes) or Ctrl-C, a summary per rule and per actor.
set -euo pipefail
BIN=${BIN:-bin/plcwatch}
SECONDS_=${DEMO_SECONDS:-60}
speed=$(awk "BEGIN { printf \"%g\", 60 / $SECONDS_ }")
dir=$(mktemp -d "${TMPDIR:-/tmp}/plcwatch-demo.XXXXXX")
mkdir -p "$dir/demo"
cp configs/demo/plcwatch.yaml configs/demo/rules.yaml "$dir/demo/"
cp -r configs/rules "$dir/rules"
cfg=$dir/demo/plcwatch.yaml

# free_port N: the first port from N on that nothing listens on.
free_port() {
	local p=$1
	while (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; do p=$((p + 1)); done
	echo "$p"
}
broker=$(free_port 18830)
metrics=$(free_port 19108)
sed -i "s/127.0.0.1:18830/127.0.0.1:$broker/; s/127.0.0.1:19108/127.0.0.1:$metrics/" "$cfg"
live=
if [ "$(id -u)" = 0 ]; then
	live=1
	sed -i 's/^capture:$/capture:\n  interfaces: [lo]/' "$cfg"
fi

color=
[ -t 1 ] && color=--color
summary() {
	trap - EXIT INT TERM
	[ -n "${daemon:-}" ] && kill "$daemon" 2>/dev/null
	sleep 0.5
	kill $(jobs -p) 2>/dev/null || true
	wait 2>/dev/null || true
	echo
	echo "== summary: the scenario's expectations, alerts per rule and per actor"
	if [ -z "$live" ] && [ ! -s "$dir/wire-alerts.jsonl" ] && [ -s "$dir/demo.fifo.pcap" ]; then
		# A plcwatch whose replay cannot read a stream (--pcap -): the
		# recording, replayed now that it is complete.
		echo "== the recording's alerts, replayed at the end:"
		"$BIN" replay --pcap "$dir/demo.fifo.pcap" --config "$cfg" 2>>"$dir/replay.log" | tee "$dir/wire-alerts.jsonl" | "$BIN" alerts --file - $color
	fi
	logs=(--alerts "$dir/demo/alerts.jsonl")
	[ -s "$dir/wire-alerts.jsonl" ] && logs+=(--alerts "$dir/wire-alerts.jsonl")
	"$BIN" sim check --scenario configs/scenarios/demo.yaml "${logs[@]}" || true
	if [ -n "$live" ]; then
		echo "== the full alerts (JSON): $dir/demo/alerts.jsonl"
	else
		echo "== the full alerts (JSON): $dir/demo/alerts.jsonl (polling) and $dir/wire-alerts.jsonl (the recording)"
	fi
	echo "== every event the agent saw: $dir/demo/events.jsonl; its log: $dir/daemon.log; the actors: $dir/actions.log"
	[ -s "$dir/demo.fifo.pcap" ] && mv "$dir/demo.fifo.pcap" "$dir/demo.pcap"
	[ -s "$dir/demo.pcap" ] && echo "== the scenario's traffic: $dir/demo.pcap (plcwatch replay --pcap $dir/demo.pcap --config $cfg)"
	exit 0
}
trap summary EXIT INT TERM

echo "== the demo plant: plcwatch sim --scenario configs/scenarios/demo.yaml (actions in $dir/actions.log)"
if [ -n "$live" ]; then
	"$BIN" sim --scenario configs/scenarios/demo.yaml --speed "$speed" --hold 1h --pcap "$dir/demo.pcap" >"$dir/actions.log" 2>&1 &
else
	"$BIN" sim --scenario configs/scenarios/demo.yaml --speed "$speed" --hold 1h --pcap - 2>"$dir/actions.log" >"$dir/demo.fifo.pcap" &
fi
for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.10/5020) 2>/dev/null && break; sleep 0.1; done
echo "== plcwatch run: polls tank-plc (127.0.0.10:5020) and boiler-plc (127.0.0.11:5020), embedded MQTT broker on 127.0.0.1:$broker"
if [ -n "$live" ]; then
	echo "   and captures live on lo (root)"
else
	echo "   (not root: the wire side is the scenario's recording, replayed as it is made)"
fi
"$BIN" run --config "$cfg" 2>"$dir/daemon.log" &
daemon=$!
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$broker") 2>/dev/null && break; kill -0 $daemon 2>/dev/null || break; sleep 0.1; done
kill -0 $daemon 2>/dev/null || { echo "plcwatch run stopped:"; cat "$dir/daemon.log"; exit 1; }
echo "== alerts, printed by plcwatch alerts --broker tcp://127.0.0.1:$broker as they arrive:"
"$BIN" alerts --broker "tcp://127.0.0.1:$broker" --topic 'plcwatch/demo/gw-demo/alerts/#' $color 2>"$dir/alerts.log" &
if [ -z "$live" ]; then
	tail -c +1 -f "$dir/demo.fifo.pcap" 2>/dev/null |
		"$BIN" replay --pcap - --config "$cfg" 2>"$dir/replay.log" |
		tee "$dir/wire-alerts.jsonl" |
		"$BIN" alerts --file - $color &
fi
sleep $((SECONDS_ + 3)) # the scenario, then the last poll and the safety rule's 2 s
