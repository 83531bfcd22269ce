#!/usr/bin/env bash
# Installs tickrelay as systemd services (run as root, after `make build`):
# the binary, the units, the tickrelay user (sysusers.d), and example
# configs under /etc/tickrelay that are never overwritten. Then:
#   systemctl daemon-reload && systemctl enable --now tickrelay-root tickrelay-child@a
set -euo pipefail
cd "$(dirname "$0")/.."
PREFIX=${PREFIX:-/usr/local}
ETC=${ETC:-/etc/tickrelay}
UNITS=${UNITS:-/etc/systemd/system}
[[ -x bin/tickrelay ]] || { echo "install: bin/tickrelay missing: run make build" >&2; exit 1; }
install -D -m 0755 bin/tickrelay "$PREFIX/bin/tickrelay"
install -D -m 0644 scripts/systemd/tickrelay.sysusers /usr/lib/sysusers.d/tickrelay.conf
command -v systemd-sysusers >/dev/null && systemd-sysusers /usr/lib/sysusers.d/tickrelay.conf
for u in tickrelay-root.service tickrelay-child@.service; do
	sed "s|/usr/local/bin/tickrelay|$PREFIX/bin/tickrelay|" "scripts/systemd/$u" >"$UNITS/$u"
	chmod 0644 "$UNITS/$u"
done
install -d -m 0755 "$ETC"
for f in root.conf child-a.conf; do
	[[ -e $ETC/$f ]] || install -m 0644 "scripts/systemd/$f" "$ETC/$f"
done
[[ -e $ETC/root.env ]] || install -m 0600 scripts/systemd/root.env.example "$ETC/root.env"
echo "installed: $PREFIX/bin/tickrelay, units in $UNITS, configs in $ETC (edit $ETC/root.env: mode 0600)"
echo "then: systemctl daemon-reload && systemctl enable --now tickrelay-root tickrelay-child@a"
