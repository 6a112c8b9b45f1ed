#!/usr/bin/env bash
# make demo: the demo plant of configs/scenarios/demo.yaml (a tank PLC and a
# boiler PLC, an OPC UA mixer, an HMI and the attackers the file lists,
# each from its own 127.0.0.x address), watched by plcwatch run on embedded
# defaults (configs/demo): it polls both PLCs and inspects their Modbus/TCP
# and OPC UA traffic — live on lo when root, else by replaying the
# scenario's recording as it is made. Every alert is printed as one line as
# it arrives; after the scenario (DEMO_SECONDS, default 60; below 30 the
# demo-new-writer rule is still learning when the intruder writes) or
# Ctrl-C, a summary per rule and per actor.
#
# Exit status: 0 when every expectation of the scenario was met (sim
# check), 1 when one was not or the demo could not start (a plant that
# cannot listen, the daemon stopping), 130 on Ctrl-C.
set -euo pipefail
BIN=${BIN:-bin/plcwatch}
SECONDS_=${DEMO_SECONDS:-60}
speed=$(awk "BEGIN { printf \"%g\", 60 / $SECONDS_ }")
dir=$(mktemp -d "${TMPDIR:-/tmp}/plcwatch-demo.XXXXXX")
mkdir -p "$dir/demo"
cp configs/demo/plcwatch.yaml configs/demo/rules.yaml "$dir/demo/"
cp -r configs/rules "$dir/rules"
cfg=$dir/demo/plcwatch.yaml

# free_port N HOST...: the first port from N on that nothing listens on at
# any of the hosts (127.0.0.1 when none is given). With "any" first, a port
# that anything listens on, at any address, is taken too (ss): live capture
# on lo tells servers apart by port only, so a stranger's server on
# 127.0.0.17:4841 would put its traffic in the demo's.
free_port() {
	local p=$1 h busy any=
	shift
	if [ "${1:-}" = any ]; then any=1; shift; fi
	[ $# -gt 0 ] || set -- 127.0.0.1
	while :; do
		busy=
		for h in "$@"; do
			if (exec 3<>"/dev/tcp/$h/$p") 2>/dev/null; then busy=1; break; fi
		done
		if [ -z "$busy" ] && [ -n "$any" ] && command -v ss >/dev/null && [ -n "$(ss -Hltn "sport = :$p" 2>/dev/null)" ]; then
			busy=1
		fi
		[ -z "$busy" ] && break
		p=$((p + 1))
	done
	echo "$p"
}
broker=$(free_port 18830)
metrics=$(free_port 19108)
sed -i "s/127.0.0.1:18830/127.0.0.1:$broker/; s/127.0.0.1:19108/127.0.0.1:$metrics/" "$cfg"

# The plants listen where the scenario says (Modbus 127.0.0.10-11:5020,
# OPC UA 127.0.0.12:4841) unless something listens on those ports already —
# another demo, a test, a simulator — whose answers (or traffic, captured on
# lo) the demo would take for its plant's: then on the same addresses with
# the next free ports, in copies of the scenario and of the daemon's
# configuration.
scenario=$dir/demo-scenario.yaml
cp configs/scenarios/demo.yaml "$scenario"
# DEMO_MODBUS_PORT and DEMO_OPCUA_PORT start the search elsewhere.
mb=$(free_port "${DEMO_MODBUS_PORT:-5020}" any 127.0.0.10 127.0.0.11)
ua=$(free_port "${DEMO_OPCUA_PORT:-4841}" any 127.0.0.12)
if [ "$mb" != 5020 ] || [ "$ua" != 4841 ]; then
	echo "== the scenario's plant ports are taken: the demo plant listens on Modbus port $mb and OPC UA port $ua instead"
	sed -i "s/\(127\.0\.0\.1[01]\):5020/\1:$mb/g; s/127\.0\.0\.12:4841/127.0.0.12:$ua/g" "$scenario" "$cfg"
	sed -i "s/modbus_ports: \[5020\]/modbus_ports: [$mb]/; s/opcua_ports: \[4841\]/opcua_ports: [$ua]/" "$cfg"
fi
live=
if [ "$(id -u)" = 0 ]; then
	live=1
	sed -i 's/^capture:$/capture:\n  interfaces: [lo]/' "$cfg"
fi

color=
[ -t 1 ] && color=--color
interrupted=
summary() {
	local rc=$?
	trap - EXIT INT TERM
	[ -n "${daemon:-}" ] && kill "$daemon" 2>/dev/null
	sleep 0.5
	kill $(jobs -p) 2>/dev/null || true
	wait 2>/dev/null || true
	if [ -z "$started" ] && [ -z "$interrupted" ]; then
		echo "== make demo FAILED: the demo did not start (above); its files: $dir" >&2
		exit 1
	fi
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
	"$BIN" sim check --scenario "$scenario" "${logs[@]}" || rc=1
	if [ -n "$live" ]; then
		echo "== the full alerts (JSON): $dir/demo/alerts.jsonl"
	else
		echo "== the full alerts (JSON): $dir/demo/alerts.jsonl (polling) and $dir/wire-alerts.jsonl (the recording)"
	fi
	echo "== every event the agent saw: $dir/demo/events.jsonl; its log: $dir/daemon.log; the actors: $dir/actions.log"
	[ -s "$dir/demo.fifo.pcap" ] && mv "$dir/demo.fifo.pcap" "$dir/demo.pcap"
	[ -s "$dir/demo.pcap" ] && echo "== the scenario's traffic: $dir/demo.pcap (plcwatch replay --pcap $dir/demo.pcap --config $cfg)"
	if [ -n "$interrupted" ]; then
		exit 130
	fi
	if [ "$rc" != 0 ]; then
		echo "== make demo FAILED: the scenario's expectations were not all met (sim check, above)" >&2
		exit 1
	fi
	exit 0
}
started=
trap summary EXIT TERM
trap 'interrupted=1; summary' INT

echo "== the demo plant: plcwatch sim --scenario configs/scenarios/demo.yaml (actions in $dir/actions.log)"
if [ -n "$live" ]; then
	"$BIN" sim --scenario "$scenario" --speed "$speed" --hold 1h --pcap "$dir/demo.pcap" >"$dir/actions.log" 2>&1 &
else
	"$BIN" sim --scenario "$scenario" --speed "$speed" --hold 1h --pcap - 2>"$dir/actions.log" >"$dir/demo.fifo.pcap" &
fi
sim=$!
# The plants listen before the scenario's line ("scenario demo: ..."); a
# plant that cannot listen ends plcwatch sim with the reason.
for _ in $(seq 200); do
	grep -q '^scenario ' "$dir/actions.log" 2>/dev/null && break
	kill -0 $sim 2>/dev/null || break
	sleep 0.1
done
if ! grep -q '^scenario ' "$dir/actions.log" 2>/dev/null; then
	echo "== the demo plant did not start:" >&2
	cat "$dir/actions.log" >&2
	exit 1
fi
echo "== plcwatch run: polls tank-plc (127.0.0.10:$mb) and boiler-plc (127.0.0.11:$mb), embedded MQTT broker on 127.0.0.1:$broker"
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
started=1
sleep $((SECONDS_ + 3)) # the scenario, then the last poll and the safety rule's 2 s
