#!/usr/bin/env bash
# make package: deb and rpm of plcwatch for amd64, arm64 and armv7 in dist/,
# with dist/SHA256SUMS. Reproducible: the binaries are built with -trimpath
# and without VCS stamping, every timestamp is the last commit's
# (SOURCE_DATE_EPOCH), so two builds from one commit are byte-identical
# (make package-check). nfpm v2.45.2 is installed into .bin/ (gitignored).
set -euo pipefail
cd "$(dirname "$0")/../.."

NFPM_VERSION=v2.45.2
DIST=${DIST:-dist}
BIN=.bin
ARCHES=${ARCHES:-"amd64 arm64 arm7"}

export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct)}
export TZ=UTC LC_ALL=C
VERSION=${VERSION:-$(git describe --tags --always --dirty 2>/dev/null || echo dev)}
# Debian and RPM versions start with a digit: a tag v1.2.3 gives 1.2.3,
# anything else a snapshot of the commit's time (to the second, so that
# snapshots sort in commit order within a day) and hash (version.sh).
PKG_VERSION=$(VERSION=$VERSION bash deploy/package/version.sh)
export PKG_VERSION

if ! go version -m "$BIN/nfpm" 2>/dev/null | grep -q "nfpm/v2[[:space:]]*$NFPM_VERSION"; then
	echo "package: installing nfpm $NFPM_VERSION into $BIN/"
	GOBIN=$PWD/$BIN go install "github.com/goreleaser/nfpm/v2/cmd/nfpm@$NFPM_VERSION"
fi

# Generated files: in .bin/, as nfpm does not expand variables in the
# changelog's path.
work=$BIN/work
rm -rf "$work"
export PKG_WORK=$work
mkdir -p "$DIST" "$work/man" "$work/bin" "$work/rules"
cp configs/rules/*.yaml "$work/rules/"
rm "$work/rules/site-lists.yaml" # /etc/plcwatch/rules.d/site-lists.yaml, the user's
rm -f "$DIST"/plcwatch_* "$DIST"/plcwatch-* "$DIST/SHA256SUMS"

# The binaries: static, no paths of this machine, no VCS stamp (a dirty
# tree would differ), the version in main.version.
for a in $ARCHES; do
	case $a in
	amd64) env=(GOARCH=amd64) ;;
	arm64) env=(GOARCH=arm64) ;;
	arm7) env=(GOARCH=arm GOARM=7) ;;
	*) echo "package: unknown arch $a" >&2; exit 2 ;;
	esac
	env CGO_ENABLED=0 GOOS=linux "${env[@]}" go build -trimpath -buildvcs=false \
		-ldflags "-s -w -buildid= -X main.version=$VERSION" -o "$work/bin/plcwatch-$a" ./cmd/plcwatch
done

# Man pages from the help text (the amd64 binary runs here), gzip -n: no
# name or time in the header.
go run -trimpath -ldflags "-X main.version=$VERSION" ./cmd/plcwatch man --dir "$work/man"
gzip -9n "$work"/man/*.1

# The changelog nfpm writes as changelog.Debian.gz (and the rpm's
# %changelog): this build's entry.
cat >"$work/changelog.yaml" <<YAML
- semver: $PKG_VERSION-1
  date: $(date -u -d "@$SOURCE_DATE_EPOCH" +%Y-%m-%dT%H:%M:%SZ)
  packager: plcwatch maintainers <plcwatch@users.noreply.github.com>
  deb:
    urgency: low
    distributions: [unstable]
  changes:
    - commit: $(git rev-parse HEAD)
      note: Snapshot of plcwatch $VERSION; the changes are in the git history.
YAML

for a in $ARCHES; do
	export PKG_ARCH=$a PKG_BIN=$work/bin/plcwatch-$a
	for f in deb rpm; do
		"$BIN/nfpm" package --config deploy/package/nfpm.yaml --packager "$f" --target "$DIST/" >"$work/nfpm.log" 2>&1 ||
			{ cat "$work/nfpm.log" >&2; exit 1; }
	done
done
(cd "$DIST" && sha256sum plcwatch_* plcwatch-* >SHA256SUMS)
echo "package: $PKG_VERSION (SOURCE_DATE_EPOCH=$SOURCE_DATE_EPOCH) in $DIST/:"
(cd "$DIST" && ls -l plcwatch_* plcwatch-* | awk '{print "  " $5 "\t" $9}')
