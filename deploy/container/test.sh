#!/usr/bin/env bash
# make image-test: the image in dist/plcwatch-image-amd64.oci.tar, as a
# runtime would unpack it (layers in order, with their extended
# attributes), checked without a container runtime: its configuration
# (user 65532, entrypoint), the binary's file capability
# (cap_net_raw=ep), and the binary run chrooted in the rootfs as user
# 65532: "plcwatch version" and "plcwatch config check" of the image's
# configuration with the image's rules.
set -euo pipefail
cd "$(dirname "$0")/../.."

archive=dist/plcwatch-image-amd64.oci.tar
if [ ! -f "$archive" ]; then
	[ "${CI:-}" = true ] && { echo "image-test: $archive was not built" >&2; exit 1; }
	echo "image-test: skipped: no $archive (make image skipped: no buildah or not root)"
	exit 0
fi
fail() { echo "image-test: FAIL: $*" >&2; exit 1; }
ok() { echo "image-test: ok: $*"; }

dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
tar -xf "$archive" -C "$dir"
blob() { echo "$dir/blobs/${1/://}"; }
manifest=$(blob "$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["manifests"][0]["digest"])' "$dir/index.json")")
read -r config layers < <(python3 -c 'import json,sys; m=json.load(open(sys.argv[1])); print(m["config"]["digest"], " ".join(l["digest"] for l in m["layers"]))' "$manifest")
python3 - "$(blob "$config")" <<'PY' || fail "image configuration"
import json, sys
c = json.load(open(sys.argv[1]))
cfg = c["config"]
want = {"User": "65532:65532", "Entrypoint": ["/usr/bin/plcwatch"],
        "Cmd": ["run", "--config", "/etc/plcwatch/plcwatch.yaml"], "WorkingDir": "/var/lib/plcwatch"}
bad = {k: cfg.get(k) for k, v in want.items() if cfg.get(k) != v}
if bad or c["os"] != "linux" or c["architecture"] != "amd64":
    sys.exit(f"image config: {bad} {c['os']}/{c['architecture']}")
print(f"image-test: ok: config: user {cfg['User']}, entrypoint {cfg['Entrypoint']}, cmd {cfg['Cmd']}, {c['os']}/{c['architecture']}")
PY

rootfs=$dir/rootfs
mkdir "$rootfs"
for l in $layers; do
	tar --xattrs --xattrs-include='*' --numeric-owner -xpf "$(blob "$l")" -C "$rootfs"
done
ok "rootfs: $(find "$rootfs" -type f | wc -l) files, $(du -sh "$rootfs" | cut -f1)"

caps=$(getcap "$rootfs/usr/bin/plcwatch")
grep -q 'cap_net_raw=ep' <<<"$caps" || fail "file capability of /usr/bin/plcwatch: '$caps'"
ok "getcap /usr/bin/plcwatch: ${caps##* }"
[ "$(stat -c '%u:%g %a' "$rootfs/var/lib/plcwatch")" = "65532:65532 750" ] || fail "/var/lib/plcwatch: $(stat -c '%u:%g %a' "$rootfs/var/lib/plcwatch")"
[ -s "$rootfs/etc/ssl/certs/ca-certificates.crt" ] || fail "no CA certificates"
ok "/var/lib/plcwatch 65532:65532 750, CA certificates ($(grep -c 'BEGIN CERT' "$rootfs/etc/ssl/certs/ca-certificates.crt"))"

# In a network namespace of its own, as a container runs (config check
# binds the configuration's listeners, which another program on this
# machine may hold).
in_image() { unshare --net sh -c 'ip link set lo up && exec chroot --userspec=65532:65532 "$0" /usr/bin/plcwatch "$@"' "$rootfs" "$@"; }
v=$(in_image version) || fail "plcwatch version"
ok "$v"
# The image's own configuration and rules, as the container's user.
out=$(in_image config check /etc/plcwatch/plcwatch.yaml 2>&1) || fail "config check: $out"
ok "$out"
# The file capability is honoured: user 65532, whose permitted set is
# empty, gets CAP_NET_RAW (bit 13) executing the binary.
eff=$(chroot --userspec=65532:65532 "$rootfs" /usr/bin/plcwatch sim modbus --listen 127.0.0.1:0 >/dev/null 2>&1 & pid=$!
	sleep 1; grep CapEff "/proc/$pid/status"; kill "$pid")
[ $(( 0x${eff##*[[:space:]]} >> 13 & 1 )) = 1 ] || fail "the binary runs without CAP_NET_RAW: $eff"
ok "as user 65532 the binary runs with CAP_NET_RAW ($eff)"
# Without NET_RAW in the bounding set (docker run --cap-drop=ALL, Podman's
# default set) the kernel refuses to run a binary whose file capabilities
# it cannot grant: the run lines in deploy/README.md keep NET_RAW.
if setpriv --reuid=65532 --regid=65532 --clear-groups --bounding-set=-all "$rootfs/usr/bin/plcwatch" version >/dev/null 2>&1; then
	fail "the binary ran without NET_RAW in the bounding set: is its file capability gone?"
fi
ok "without NET_RAW in the bounding set the binary does not start (EPERM): the runtime must grant NET_RAW"
