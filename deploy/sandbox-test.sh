#!/usr/bin/env bash
# make sandbox-test (root): what deploy/plcwatch.service allows is enough
# for the product, shown without systemd as PID 1. The agent runs as the
# unit runs it: user plcwatch, supplementary group dialout, CAP_NET_RAW as
# its only capability (ambient, bounding set CAP_NET_RAW only),
# no_new_privs, umask 0077, writing only its state folder. With it:
#   - capture on lo sees a Modbus write to a simulated PLC (AF_PACKET),
#   - serial Modbus RTU polls a pymodbus server through a socat pty pair
#     whose device is root:dialout 0660, as /dev/ttyUSB0 is,
#   - the alert of the write is spooled, and logged, in the state folder.
# (The unit's other settings — ProtectSystem, DeviceAllow, the system call
# filter — need systemd to apply; systemd-analyze scores them, and the
# system call filter is @system-service, which the Go runtime and the
# agent's sockets stay within.)
set -euo pipefail
cd "$(dirname "$0")/.."

skip() {
	[ "${CI:-}" = true ] && { echo "sandbox-test: $*" >&2; exit 1; }
	echo "sandbox-test: skipped: $*"
	exit 0
}
[ "$(id -u)" = 0 ] || skip "needs root"
for c in setpriv socat mbpoll /usr/bin/python3; do command -v "$c" >/dev/null || skip "$c is not installed"; done
/usr/bin/python3 -c 'import pymodbus, serial' 2>/dev/null || skip "pymodbus or pyserial is not installed"
fail() { echo "sandbox-test: FAIL: $*" >&2; [ -f "$dir/agent.log" ] && tail -20 "$dir/agent.log" >&2; exit 1; }
ok() { echo "sandbox-test: ok: $*"; }

# The unit's user and group, as the package makes them.
if ! getent passwd plcwatch >/dev/null; then
	if command -v systemd-sysusers >/dev/null; then
		systemd-sysusers deploy/package/sysusers.conf
	else
		useradd --system --user-group --home-dir /var/lib/plcwatch --shell /usr/sbin/nologin plcwatch
		usermod -a -G dialout plcwatch
	fi
fi

dir=$(mktemp -d)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$dir"
}
trap cleanup EXIT
chmod 0755 "$dir"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

install -m 0755 bin/plcwatch "$dir/plcwatch"
mkdir -m 0755 "$dir/etc" "$dir/rules"
install -d -m 0750 -o plcwatch -g plcwatch "$dir/state" # StateDirectory=plcwatch

# A simulated PLC on Modbus/TCP, and a serial line: socat's pty pair, the
# agent's end made root:dialout 0660 like a USB-RS485 adapter.
mbport=$(free_port)
"$dir/plcwatch" sim modbus --listen "127.0.0.1:$mbport" >"$dir/sim.log" 2>&1 &
pids+=($!)
socat "pty,raw,echo=0,link=$dir/ttyAGENT" "pty,raw,echo=0,link=$dir/ttySIM" 2>"$dir/socat.log" &
pids+=($!)
for _ in $(seq 50); do [ -e "$dir/ttyAGENT" ] && [ -e "$dir/ttySIM" ] && break; sleep 0.1; done
[ -e "$dir/ttyAGENT" ] || fail "socat made no pty pair"
tty=$(readlink -f "$dir/ttyAGENT")
chown root:dialout "$tty"
chmod 0660 "$tty"
echo '{"holding": [{"address": 0, "type": "uint16", "value": 4242}]}' >"$dir/spec.json"
/usr/bin/python3 collectors/modbus/testdata/pymodbus_server.py "$dir/spec.json" "$dir/ttySIM" serial >"$dir/pymodbus.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do grep -q ready "$dir/pymodbus.log" && break; sleep 0.1; done
grep -q ready "$dir/pymodbus.log" || fail "pymodbus did not start: $(cat "$dir/pymodbus.log")"

cat >"$dir/rules/sandbox.yaml" <<'YAML'
rules:
  - id: sandbox-modbus-write
    title: Modbus write seen on the wire
    severity: high
    attack: [T0836]
    match: {source: wire, protocol: modbus, op: write}
YAML
brokerport=$(free_port)
cat >"$dir/etc/plcwatch.yaml" <<YAML
site: sandbox
gateway: gw
capture:
  interfaces: [lo]
  modbus_ports: [$mbport]
rules:
  paths: [$dir/rules]
mqtt:
  embedded: {listen: 127.0.0.1:$brokerport}
spool:
  dir: $dir/state/spool
alert_log:
  path: $dir/state/alerts.jsonl
event_log:
  path: $dir/state/events.jsonl
http:
  listen: "off"
modbus:
  devices:
    - name: rtu-1
      transport: rtu
      address: $dir/ttyAGENT
      unit: 1
      interval: 500ms
      serial: {baud: 19200}
      tags:
        - {name: level, table: holding, address: 0}
YAML

# The unit's identity and privileges.
as_unit=(setpriv --reuid=plcwatch --regid=plcwatch --groups="$(getent group dialout | cut -d: -f3)"
	--inh-caps=-all,+net_raw --ambient-caps=-all,+net_raw --bounding-set=-all,+net_raw --no-new-privs)
"${as_unit[@]}" "$dir/plcwatch" config check "$dir/etc/plcwatch.yaml" >/dev/null || fail "config check as the unit's user"
(umask 0077; exec "${as_unit[@]}" "$dir/plcwatch" run --config "$dir/etc/plcwatch.yaml") >"$dir/agent.log" 2>&1 &
agent=$!
pids+=($agent)
sleep 1
caps=$(grep -E '^(Uid|Groups|CapEff|CapBnd|NoNewPrivs)' "/proc/$agent/status" 2>/dev/null | tr -s '\t ' ' ' | tr '\n' ';') || fail "the agent exited"
grep -q 'CapEff: 0000000000002000' <<<"$caps" || fail "capabilities: $caps"
ok "agent running as the unit runs it: $caps"

# A write on lo, to the simulated PLC, after the capture started.
for i in $(seq 40); do
	mbpoll -m tcp -p "$mbport" -a 1 -r 11 -t 4 -1 127.0.0.1 777 >/dev/null 2>&1 || true
	grep -q '"op":"write"' "$dir/state/events.jsonl" 2>/dev/null && break
	sleep 0.5
done
grep -q '"op":"write"' "$dir/state/events.jsonl" 2>/dev/null || fail "capture on lo saw no Modbus write"
ok "capture on lo (AF_PACKET with CAP_NET_RAW only): $(grep -m1 '"op":"write"' "$dir/state/events.jsonl" | cut -c1-160)"

for i in $(seq 40); do
	grep -q '"device":"rtu-1"' "$dir/state/events.jsonl" 2>/dev/null && grep -q '4242' "$dir/state/events.jsonl" && break
	sleep 0.5
done
grep '"device":"rtu-1"' "$dir/state/events.jsonl" 2>/dev/null | grep -q 4242 || fail "no poll of rtu-1 over the serial line"
ok "serial RTU through $tty (root:dialout 0660): $(grep '"device":"rtu-1"' "$dir/state/events.jsonl" | grep -m1 4242 | cut -c1-200)"

for i in $(seq 20); do grep -q sandbox-modbus-write "$dir/state/alerts.jsonl" 2>/dev/null && break; sleep 0.5; done
grep -q sandbox-modbus-write "$dir/state/alerts.jsonl" || fail "no alert in the alert log"
[ -d "$dir/state/spool" ] || fail "no spool folder"
owner=$(find "$dir/state" -mindepth 1 -printf '%u:%m %P\n' | sort | head -5 | tr '\n' ';')
find "$dir/state" -mindepth 1 ! -user plcwatch | grep -q . && fail "files not the agent's in the state folder: $owner"
find "$dir/state" -mindepth 1 -perm /077 -type f | grep -q . && fail "files readable beyond the agent (UMask=0077): $owner"
ok "spool, alert and event logs in the state folder, the agent's alone: $owner"
kill "$agent"
wait "$agent" 2>/dev/null || true
