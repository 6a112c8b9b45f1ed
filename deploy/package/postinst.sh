#!/bin/sh
# After install and upgrade (deb: configure; rpm: $1 = 1 install, 2 upgrade).
# Creates the user and the state folder; never starts the agent on install
# (its configuration must be edited first); restarts it on upgrade when it
# was running.
set -e

case "$1" in
configure | 1 | 2) ;;
*) exit 0 ;;
esac

if command -v systemd-sysusers >/dev/null 2>&1; then
	systemd-sysusers /usr/lib/sysusers.d/plcwatch.conf
else
	getent group plcwatch >/dev/null || groupadd --system plcwatch
	getent passwd plcwatch >/dev/null ||
		useradd --system --gid plcwatch --home-dir /var/lib/plcwatch --no-create-home \
			--shell /usr/sbin/nologin --comment "plcwatch agent" plcwatch
	getent group dialout >/dev/null || groupadd --system dialout
	usermod -a -G dialout plcwatch
fi

if command -v systemd-tmpfiles >/dev/null 2>&1; then
	systemd-tmpfiles --create /usr/lib/tmpfiles.d/plcwatch.conf
else
	install -d -m 0750 -o plcwatch -g plcwatch /var/lib/plcwatch
fi

if [ -d /run/systemd/system ]; then
	systemctl daemon-reload || true
	# Upgrade (deb: configure with the old version; rpm: 2): a running
	# agent restarts on the new binary. A first install starts nothing.
	if [ -n "$2" ] || [ "$1" = 2 ]; then
		systemctl try-restart plcwatch.service || true
	fi
fi
exit 0
