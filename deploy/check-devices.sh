#!/usr/bin/env bash
# make check-service: the unit's DeviceAllow= char- groups (globs matched
# against /proc/devices names, as systemd matches them with fnmatch) let
# the serial classes of gateways through, and no terminal.
set -euo pipefail
unit=${1:-deploy/plcwatch.service}
mapfile -t globs < <(sed -n 's/^DeviceAllow=char-\([^ ]*\) .*/\1/p' "$unit")
[ ${#globs[@]} -gt 0 ] || { echo "check-devices: no DeviceAllow=char-... in $unit" >&2; exit 1; }
matches() {
	local g
	for g in "${globs[@]}"; do
		# shellcheck disable=SC2053 # a glob, on purpose
		[[ $1 == $g ]] && return 0
	done
	return 1
}
bad=0
# /proc/devices names of serial drivers: PC and ARM gateways, HATs, USB.
for name in ttyS ttyUSB ttyACM ttyAMA ttymxc ttySC ttyO ttyLP ttySTM ttyMSM ttySAC ttyPS ttyTHS ttyMV ttyGS ttyMAX ttyXR; do
	matches "$name" || { echo "check-devices: serial class $name is not allowed by $unit" >&2; bad=1; }
done
# Terminals, consoles and other character devices: never.
for name in tty /dev/tty /dev/console /dev/ptmx pts ttyprintk vcs mem input hidraw; do
	if matches "$name"; then echo "check-devices: $name is allowed by $unit" >&2; bad=1; fi
done
[ $bad = 0 ] && echo "$unit: DeviceAllow lets the serial classes through (${globs[*]}), no terminal"
exit $bad
