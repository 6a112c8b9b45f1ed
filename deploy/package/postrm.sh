#!/bin/sh
# After removal (deb: remove, purge; rpm: $1 = 0).
#   remove: the configuration in /etc/plcwatch stays (conffiles), and so does
#           an unsent spool in /var/lib/plcwatch; an empty one goes.
#   purge:  /var/lib/plcwatch goes, spool, baseline and all, and
#           /var/log/plcwatch (the unit's LogsDirectory), as Debian policy
#           wants logs gone on purge. dpkg removes the conffiles; files the
#           user added in /etc/plcwatch (rules.d/local.yaml) stay, as with
#           every package. The plcwatch user stays, as Debian keeps system
#           users (its files may remain elsewhere).
set -e
case "$1" in
remove | 0)
	rmdir /var/lib/plcwatch/spool 2>/dev/null || true
	rmdir /var/lib/plcwatch 2>/dev/null || true
	rmdir /var/log/plcwatch 2>/dev/null || true
	;;
purge)
	rm -rf /var/lib/plcwatch /var/log/plcwatch
	;;
esac
if [ -d /run/systemd/system ]; then
	systemctl daemon-reload >/dev/null 2>&1 || true
fi
exit 0
