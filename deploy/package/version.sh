#!/usr/bin/env bash
# The Debian/RPM version of a commit (default HEAD), for build.sh: a tag
# v1.2.3 gives 1.2.3; anything else a snapshot 0.0~gitYYYYMMDDhhmmss.<hash>
# of the commit's time to the second (UTC), so that two snapshots of one
# day sort in commit order (dpkg and rpm compare the digits as a number;
# the day alone left the hash to decide). VERSION, when set, is the
# version string to map (git describe's output).
set -euo pipefail
commit=${1:-HEAD}
version=${VERSION:-$(git describe --tags --always --dirty "$commit" 2>/dev/null || git describe --tags --always "$commit" 2>/dev/null || echo dev)}
if [[ $version =~ ^v?([0-9]+\.[0-9]+\.[0-9]+)$ ]]; then
	echo "${BASH_REMATCH[1]}"
else
	echo "0.0~git$(TZ=UTC git log -1 --date=format-local:%Y%m%d%H%M%S --format=%cd "$commit").$(git rev-parse --short=7 "$commit")"
fi
