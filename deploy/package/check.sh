#!/usr/bin/env bash
# make package-check: the packages are reproducible (two builds from one
# commit, each from a clean Go build cache for plcwatch's own packages,
# give byte-identical files) and lintian finds no error in the amd64 deb.
# The second build shares Go's build cache (content-addressed: the same
# inputs give the same objects); PACKAGE_CHECK_FRESH=1 gives it an empty
# one, to see that the compiler's output is deterministic too (minutes
# longer).
set -euo pipefail
cd "$(dirname "$0")/../.."

a=dist b=.bin/dist-again
rm -rf "$b"
DIST=$a bash deploy/package/build.sh
if [ "${PACKAGE_CHECK_FRESH:-}" = 1 ]; then
	cache=$(mktemp -d)
	trap 'rm -rf "$cache"' EXIT
	GOCACHE=$cache DIST=$b bash deploy/package/build.sh >/dev/null
else
	DIST=$b bash deploy/package/build.sh >/dev/null
fi
fail=0
for f in "$a"/plcwatch_* "$a"/plcwatch-* "$a"/SHA256SUMS; do
	if ! cmp -s "$f" "$b/$(basename "$f")"; then
		echo "package-check: $(basename "$f") differs between two builds" >&2
		fail=1
	fi
done
[ "$fail" = 0 ] && echo "package-check: two builds are byte-identical ($(ls "$a" | wc -l) files)"

# Snapshot versions sort in commit order, also within a day (the day and
# hash alone did not): each of the last commits' is above its parent's.
if command -v dpkg >/dev/null; then
	prev=
	for c in $(git rev-list --reverse --max-count=8 HEAD); do
		v=$(VERSION=snapshot bash deploy/package/version.sh "$c")
		if [ -n "$prev" ] && [ "$(git log -1 --format=%ct "$c")" -gt "$(git log -1 --format=%ct "$c~1")" ] &&
			! dpkg --compare-versions "$prev" lt "$v"; then
			echo "package-check: snapshot $v does not sort after its parent's $prev" >&2
			fail=1
		fi
		prev=$v
	done
	echo "package-check: snapshot versions sort in commit order (last: $prev)"
fi

if command -v lintian >/dev/null; then
	# lintian warns that it runs as root; it reads the package only.
	out=$(lintian --fail-on error --tag-display-limit 0 "$a"/plcwatch_*_amd64.deb 2>&1 | grep -v 'running with root privileges') || {
		echo "$out" >&2
		echo "package-check: lintian reports errors" >&2
		fail=1
	}
	echo "package-check: lintian: $(echo "$out" | grep -c '^E:' || true) errors, $(echo "$out" | grep -c '^W:' || true) warnings"
	echo "$out" | grep '^[EW]:' | sed 's/^/  /' || true
elif [ "${CI:-}" = true ]; then
	echo "package-check: lintian is not installed (CI installs it: .ci/run)" >&2
	fail=1
else
	echo "package-check: lintian not installed, not run (apt-get install lintian)"
fi
exit "$fail"
