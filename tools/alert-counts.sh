#!/usr/bin/env bash
# alert-counts.sh: alerts raised per rule of the default set on every capture
# in a folder, for two builds side by side (issue 9 §10: one activity, one
# alert). The "before" build is made from a git revision in a temporary
# worktree; "after" is this tree.
#
#   tools/alert-counts.sh [BEFORE_REV] [PCAP_DIR]
#
# BEFORE_REV defaults to 5044fcd (main before this wave), PCAP_DIR to
# ../shared/pcaps/modbus. Prints a markdown table: capture, rule, alerts
# before, alerts after (rows where either is non-zero), then the totals.
set -euo pipefail
cd "$(dirname "$0")/.."
rev=${1:-5044fcd}
pcaps=${2:-../shared/pcaps/modbus}
tmp=$(mktemp -d)
trap 'git worktree remove --force "$tmp/before" >/dev/null 2>&1 || true; rm -rf "$tmp"' EXIT

git worktree add --detach "$tmp/before" "$rev" >/dev/null 2>&1
(cd "$tmp/before" && CGO_ENABLED=0 go build -o "$tmp/before.bin" ./cmd/plcwatch)
CGO_ENABLED=0 go build -o "$tmp/after.bin" ./cmd/plcwatch

# counts BIN RULES PCAP: "rule alerts" lines from the hits table on stderr.
counts() {
	"$1" rules test --rules "$2" --pcap "$3" 2>&1 >/dev/null |
		awk '$1 == "rule" && $2 == "matched" {t = 1; next} t && NF >= 6 && $3 ~ /^[0-9]+$/ {print $1, $3}'
}

echo "| capture | rule | before | after |"
echo "|---|---|---:|---:|"
tb=0
ta=0
for p in "$pcaps"/*.pcap; do
	name=$(basename "$p" .pcap)
	counts "$tmp/before.bin" "$tmp/before/configs/rules" "$p" >"$tmp/b"
	counts "$tmp/after.bin" configs/rules "$p" >"$tmp/a"
	join -a1 -a2 -e0 -o 0,1.2,2.2 <(sort "$tmp/b") <(sort "$tmp/a") |
		while read -r rule b a; do
			if [ "$b" != 0 ] || [ "$a" != 0 ]; then echo "| $name | $rule | $b | $a |"; fi
		done
	tb=$((tb + $(awk '{s += $2} END {print s + 0}' "$tmp/b")))
	ta=$((ta + $(awk '{s += $2} END {print s + 0}' "$tmp/a")))
done
echo "| **all** | **total** | **$tb** | **$ta** |"
