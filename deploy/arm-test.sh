#!/usr/bin/env bash
# make test-arm: plcwatch on the gateways' architectures, under qemu
# user-mode emulation (Debian's qemu-user-static):
#   1. the unit tests of the decoders, reassembly, rules, spool, pollers and
#      the shared types on linux/arm64 and on 32-bit linux/arm (GOARM=7),
#      where unaligned 64-bit atomics and int-size assumptions break;
#      -skip Live|NeedsOnlyNetRaw: qemu-user has no raw sockets to capture on,
#      and NeedsOnlyNetRaw re-executes the test binary under setpriv (no qemu);
#   2. plcwatch replay --events with the default rules on real captures
#      (two Modbus/TCP, one OPC UA with a gap) under each emulator: the
#      same bytes as on amd64.
# Heavy on a small machine (it compiles and runs the tests twice more):
# it runs under nice. ARCHES="arm64" runs one.
set -euo pipefail
cd "$(dirname "$0")/.."

ARCHES=${ARCHES:-"arm64 arm"}
PKGS=${PKGS:-"./ ./collectors/... ./rules/... ./agent/spool/..."}
PCAPS=${PCAPS:-"testdata/pcaps/modbus/iti_modbus_test_data_part1.pcap testdata/pcaps/modbus/iti_ModbusTCP.pcap testdata/pcaps/opcua/icsnpp_opcua_with-gap_with-handshake.pcap"}
# Emulation is 5-20 times slower than the machine: generous deadlines.
TIMEOUT=${TIMEOUT:-30m}

missing=
for a in $ARCHES; do
	q=qemu-aarch64-static
	[ "$a" = arm ] && q=qemu-arm-static
	command -v "$q" >/dev/null || missing="$missing $q"
done
if [ -n "$missing" ]; then
	[ "${CI:-}" = true ] && { echo "test-arm:$missing not installed (CI installs qemu-user-static: .ci/run)" >&2; exit 1; }
	echo "test-arm: skipped:$missing not installed (apt-get install qemu-user-static)"
	exit 0
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
CGO_ENABLED=0 go build -trimpath -o "$work/plcwatch-amd64" ./cmd/plcwatch
for p in $PCAPS; do
	"$work/plcwatch-amd64" replay --pcap "$p" --events --rules configs/rules --opcua-ports 4840,48010 >"$work/$(basename "$p").amd64" 2>/dev/null
done

status=0
for a in $ARCHES; do
	case $a in
	arm64) q=qemu-aarch64-static env=(GOARCH=arm64) ;;
	arm) q=qemu-arm-static env=(GOARCH=arm GOARM=7) ;;
	*) echo "test-arm: unknown arch $a" >&2; exit 2 ;;
	esac
	start=$(date +%s)
	echo "== test-arm: go test on linux/$a under $q"
	# shellcheck disable=SC2086
	if ! env CGO_ENABLED=0 "${env[@]}" nice -n 10 go test -count=1 -timeout "$TIMEOUT" -exec "$q" -skip 'Live|NeedsOnlyNetRaw' $PKGS; then
		echo "test-arm: go test on linux/$a FAILED" >&2
		status=1
	fi
	echo "test-arm: go test on linux/$a: $(($(date +%s) - start)) s"

	env CGO_ENABLED=0 "${env[@]}" go build -trimpath -o "$work/plcwatch-$a" ./cmd/plcwatch
	for p in $PCAPS; do
		f=$(basename "$p")
		nice -n 10 "$q" "$work/plcwatch-$a" replay --pcap "$p" --events --rules configs/rules --opcua-ports 4840,48010 >"$work/$f.$a" 2>"$work/$f.$a.err" || {
			echo "test-arm: replay $f on linux/$a failed: $(tail -3 "$work/$f.$a.err")" >&2
			status=1
			continue
		}
		if cmp -s "$work/$f.amd64" "$work/$f.$a"; then
			echo "test-arm: replay $f on linux/$a: $(wc -l <"$work/$f.$a") lines, identical to amd64 ($(sha256sum <"$work/$f.$a" | cut -c1-16))"
		else
			echo "test-arm: replay $f on linux/$a differs from amd64:" >&2
			diff "$work/$f.amd64" "$work/$f.$a" | head -10 >&2
			status=1
		fi
	done
done
exit "$status"
