#!/usr/bin/env bash
# make image: the plcwatch container image, built from scratch with buildah
# (no daemon, no base image to pull), as OCI archives in dist/:
#   dist/plcwatch-image-amd64.oci.tar, -arm64, -armv7
# The same image as deploy/container/Containerfile. Root (buildah mount);
# its own storage under .bin/containers, driver vfs, so it touches no other
# user of the machine's containers. Timestamps are the commit's.
set -euo pipefail
cd "$(dirname "$0")/../.."

if ! command -v buildah >/dev/null || ! command -v setcap >/dev/null || [ "$(id -u)" != 0 ]; then
	why="needs root, buildah and setcap (apt-get install buildah libcap2-bin)"
	[ "${CI:-}" = true ] && { echo "image: $why" >&2; exit 1; }
	echo "image: skipped: $why"
	exit 0
fi

export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct)}
VERSION=${VERSION:-$(git describe --tags --always --dirty 2>/dev/null || echo dev)}
DIST=${DIST:-dist}
ARCHES=${ARCHES:-"amd64 arm64 armv7"}
store=$PWD/.bin/containers
bh() { buildah --root "$store/root" --runroot "$store/run" --storage-driver vfs "$@"; }
mkdir -p "$DIST" "$store"

work=$(mktemp -d)
ctr=
cleanup() {
	[ -n "$ctr" ] && bh rm "$ctr" >/dev/null 2>&1
	rm -rf "$work"
}
trap cleanup EXIT

for a in $ARCHES; do
	case $a in
	amd64) env=(GOARCH=amd64) oarch=amd64 variant= ;;
	arm64) env=(GOARCH=arm64) oarch=arm64 variant=v8 ;;
	armv7) env=(GOARCH=arm GOARM=7) oarch=arm variant=v7 ;;
	*) echo "image: unknown arch $a" >&2; exit 2 ;;
	esac
	env CGO_ENABLED=0 GOOS=linux "${env[@]}" go build -trimpath -buildvcs=false \
		-ldflags "-s -w -buildid= -X main.version=$VERSION" -o "$work/plcwatch-$a" ./cmd/plcwatch

	ctr=$(bh from --pull=never scratch)
	root=$(bh mount "$ctr")
	install -D -m 0755 "$work/plcwatch-$a" "$root/usr/bin/plcwatch"
	# Capture without root: the runtime grants NET_RAW to the container's
	# bounding set, the file capability raises it for the binary
	# (user 65532 has no ambient capabilities of its own).
	setcap cap_net_raw+ep "$root/usr/bin/plcwatch"
	install -d -m 0755 "$root/usr/share/plcwatch/rules" "$root/etc/plcwatch/rules.d" "$root/etc/ssl/certs" "$root/tmp"
	chmod 1777 "$root/tmp"
	install -m 0644 configs/rules/*.yaml "$root/usr/share/plcwatch/rules/"
	mv "$root/usr/share/plcwatch/rules/site-lists.yaml" "$root/etc/plcwatch/rules.d/"
	install -m 0644 deploy/container/plcwatch.yaml "$root/etc/plcwatch/plcwatch.yaml"
	install -m 0644 /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
	printf 'root:x:0:0:root:/:/sbin/nologin\nplcwatch:x:65532:65532:plcwatch:/var/lib/plcwatch:/sbin/nologin\n' >"$root/etc/passwd"
	printf 'root:x:0:\nplcwatch:x:65532:\n' >"$root/etc/group"
	install -d -m 0750 -o 65532 -g 65532 "$root/var/lib/plcwatch"
	find "$root" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
	bh umount "$ctr" >/dev/null

	bh config --arch "$oarch" ${variant:+--variant "$variant"} --os linux \
		--user 65532:65532 --workingdir /var/lib/plcwatch --volume /var/lib/plcwatch \
		--entrypoint '["/usr/bin/plcwatch"]' --cmd 'run --config /etc/plcwatch/plcwatch.yaml' \
		--label org.opencontainers.image.title=plcwatch \
		--label org.opencontainers.image.version="$VERSION" \
		--label org.opencontainers.image.revision="$(git rev-parse HEAD)" \
		--label org.opencontainers.image.source=https://github.com/plcwatch/plcwatch \
		--label org.opencontainers.image.licenses=Apache-2.0 \
		--created-by "make image" "$ctr"
	out=$DIST/plcwatch-image-$a.oci.tar
	rm -f "$out"
	bh commit --quiet --format oci --timestamp "$SOURCE_DATE_EPOCH" --rm "$ctr" "oci-archive:$out:plcwatch:$VERSION" >/dev/null
	ctr=
	echo "image: $out ($(du -h "$out" | cut -f1), linux/$oarch${variant:+/$variant}, plcwatch:$VERSION)"
done
