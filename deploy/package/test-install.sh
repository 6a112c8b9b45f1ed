#!/usr/bin/env bash
# make package-test (root): the amd64 deb on this machine, as an operator
# uses it: install, the files in place, the binary and the packaged
# configuration work, an upgrade keeps an edited configuration, remove
# leaves only the configuration, purge leaves only the user's own files. The rpm: its file
# list, with rpm when it is installed.
set -euo pipefail
cd "$(dirname "$0")/../.."

if [ "$(id -u)" != 0 ]; then
	[ "${CI:-}" = true ] && { echo "package-test: needs root" >&2; exit 1; }
	echo "package-test: skipped: needs root (dpkg -i)"
	exit 0
fi
if ! command -v dpkg >/dev/null; then
	[ "${CI:-}" = true ] && { echo "package-test: dpkg not found" >&2; exit 1; }
	echo "package-test: skipped: not a Debian system (no dpkg)"
	exit 0
fi
deb=$(ls dist/plcwatch_*_amd64.deb)
if dpkg -s plcwatch >/dev/null 2>&1; then
	echo "package-test: plcwatch is installed on this machine already; not touching it" >&2
	exit 1
fi

fail() { echo "package-test: FAIL: $*" >&2; exit 1; }
ok() { echo "package-test: ok: $*"; }
cleanup() { dpkg -P plcwatch >/dev/null 2>&1 || true; }
trap cleanup EXIT

dpkg -i "$deb" >/dev/null
for f in /usr/bin/plcwatch /etc/plcwatch/plcwatch.yaml /etc/plcwatch/rules.d/site-lists.yaml \
	/usr/share/plcwatch/rules/modbus-writes.yaml /usr/lib/systemd/system/plcwatch.service \
	/usr/lib/sysusers.d/plcwatch.conf /usr/lib/tmpfiles.d/plcwatch.conf \
	/usr/share/man/man1/plcwatch.1.gz /usr/share/man/man1/plcwatch-run.1.gz /usr/share/doc/plcwatch/copyright; do
	[ -e "$f" ] || fail "$f is missing"
done
ok "installed: files in place"
getent passwd plcwatch >/dev/null || fail "no plcwatch user"
id -nG plcwatch | grep -qw dialout || fail "plcwatch is not in dialout: $(id -nG plcwatch)"
[ "$(stat -c '%U %a' /var/lib/plcwatch)" = "plcwatch 750" ] || fail "/var/lib/plcwatch: $(stat -c '%U %a' /var/lib/plcwatch)"
ok "user plcwatch (groups: $(id -nG plcwatch)), /var/lib/plcwatch plcwatch 750"
[ "$(dpkg-query -W -f='${Conffiles}' plcwatch | awk 'NF {print $1}' | sort | tr '\n' ' ')" = \
	"/etc/plcwatch/plcwatch.yaml /etc/plcwatch/rules.d/site-lists.yaml " ] || fail "conffiles: $(dpkg-query -W -f='${Conffiles}' plcwatch)"
ok "conffiles: /etc/plcwatch/plcwatch.yaml, /etc/plcwatch/rules.d/site-lists.yaml"
if [ -d /run/systemd/system ] && systemctl is-active -q plcwatch; then fail "the install started the agent"; fi

/usr/bin/plcwatch version | grep -q '^plcwatch ' || fail "plcwatch version"
ok "$(/usr/bin/plcwatch version)"
# config check binds the configuration's listeners (the embedded broker,
# /metrics): in a network namespace of its own, so that a program of this
# shared machine on those ports does not fail it.
isolated() { unshare --net sh -c 'ip link set lo up && exec "$@"' sh "$@"; }
isolated /usr/bin/plcwatch config check /etc/plcwatch/plcwatch.yaml || fail "config check of the packaged configuration"
# As the unit runs it: the plcwatch user reads its configuration and rules.
isolated setpriv --reuid=plcwatch --regid=plcwatch --init-groups /usr/bin/plcwatch config check /etc/plcwatch/plcwatch.yaml >/dev/null ||
	fail "config check as the plcwatch user"
ok "config check /etc/plcwatch/plcwatch.yaml (as root and as plcwatch)"
man -w plcwatch-run >/dev/null 2>&1 && ok "man plcwatch-run" || true

# Upgrade: the same package again (dpkg treats it as an upgrade), with an
# edited configuration and a rule file of the user's.
echo "# edited by the operator" >>/etc/plcwatch/plcwatch.yaml
printf 'rules: []\n' >/etc/plcwatch/rules.d/local.yaml
dpkg -i --force-confold "$deb" >/dev/null
grep -q '^# edited by the operator' /etc/plcwatch/plcwatch.yaml || fail "the upgrade replaced the edited configuration"
[ -f /etc/plcwatch/rules.d/local.yaml ] || fail "the upgrade removed a user's rule file"
isolated /usr/bin/plcwatch config check /etc/plcwatch/plcwatch.yaml >/dev/null || fail "config check after the upgrade"
ok "upgrade kept the edited configuration and rules.d/local.yaml"
rm /etc/plcwatch/rules.d/local.yaml

# Remove: only the configuration stays.
dpkg -r plcwatch >/dev/null
left=$(find /etc/plcwatch /usr/share/plcwatch /usr/lib/systemd/system/plcwatch.service /usr/lib/sysusers.d/plcwatch.conf \
	/usr/lib/tmpfiles.d/plcwatch.conf /usr/bin/plcwatch /usr/share/doc/plcwatch /var/lib/plcwatch /usr/share/man/man1/plcwatch.1.gz \
	2>/dev/null | sort | tr "\n" " " || true)
[ "$left" = "/etc/plcwatch /etc/plcwatch/plcwatch.yaml /etc/plcwatch/rules.d /etc/plcwatch/rules.d/site-lists.yaml " ] ||
	fail "after dpkg -r: $left"
ok "dpkg -r left only the configuration: $left"

# Purge: the package's files, conffiles, state and logs go; a file of the
# user's in rules.d stays (dpkg removes only what it installed, and warns
# that the folder is not empty), as with every Debian package.
printf 'rules: []\n' >/etc/plcwatch/rules.d/local.yaml
mkdir -p /var/log/plcwatch && echo '{}' >/var/log/plcwatch/alerts.jsonl # what LogsDirectory= and alert_log.path make
dpkg -P plcwatch >/dev/null 2>&1
left=$(find /etc/plcwatch /usr/share/plcwatch /var/lib/plcwatch /var/log/plcwatch /usr/bin/plcwatch 2>/dev/null | sort | tr "\n" " " || true)
[ "$left" = "/etc/plcwatch /etc/plcwatch/rules.d /etc/plcwatch/rules.d/local.yaml " ] || fail "after dpkg -P: $left"
dpkg -s plcwatch >/dev/null 2>&1 && fail "dpkg still knows plcwatch"
rm -r /etc/plcwatch
ok "dpkg -P left only the user's own rules.d/local.yaml (the plcwatch user stays, as Debian keeps system users)"

# The rpm: its files, with rpm when it is there.
rpmfile=$(ls dist/plcwatch-*.x86_64.rpm)
if command -v rpm >/dev/null; then
	list=$(rpm -qp --nosignature -l "$rpmfile")
	for f in /usr/bin/plcwatch /etc/plcwatch/plcwatch.yaml /usr/lib/systemd/system/plcwatch.service /usr/share/plcwatch/rules/modbus-writes.yaml; do
		grep -qx "$f" <<<"$list" || fail "rpm lacks $f"
	done
	cfg=$(rpm -qp --nosignature -c "$rpmfile" | tr '\n' ' ')
	[ "$cfg" = "/etc/plcwatch/plcwatch.yaml /etc/plcwatch/rules.d/site-lists.yaml " ] || fail "rpm config files: $cfg"
	ok "rpm -qpl: files in place; config files: $cfg"
else
	echo "package-test: rpm not installed: the rpm's contents were not checked (apt-get install rpm)"
fi
