#!/bin/sh
# After removal (deb: remove, purge; rpm: $1 = 0).
#   remove: the configuration in /etc/plcwatch stays (conffiles), and so does
#           an unsent spool in /var/lib/plcwatch; an empty one goes.
#   purge:  /var/lib/plcwatch goes, spool, baseline and all. The plcwatch
#           user stays, as Debian keeps system users (its files may remain
#           elsewhere).
set -e
case "$1" in
remove | 0)
	rmdir /var/lib/plcwatch/spool 2>/dev/null || true
	rmdir /var/lib/plcwatch 2>/dev/null || true
	;;
purge)
	rm -rf /var/lib/plcwatch
	;;
esac
if [ -d /run/systemd/system ]; then
	systemctl daemon-reload >/dev/null 2>&1 || true
fi
exit 0
