#!/bin/sh
# Before removal (deb: remove; rpm: $1 = 0). Upgrades leave the agent running.
set -e
case "$1" in
remove | 0)
	if [ -d /run/systemd/system ]; then
		systemctl --no-reload disable --now plcwatch.service >/dev/null 2>&1 || true
	fi
	;;
esac
exit 0
