#!/bin/sh
# Installs Debian's Chromium for the browser smoke test (test/browser.test.ts),
# and a colour emoji font: the forum marks threads with 📌 🔒 ✓, which a bare
# Debian shows as empty boxes in the screenshots. playwright-core drives the
# browser; no browser build is downloaded.
set -eu
PKGS=""
[ -x /usr/bin/chromium ] || PKGS="chromium"
dpkg -s fonts-noto-color-emoji >/dev/null 2>&1 || PKGS="$PKGS fonts-noto-color-emoji"
if [ -z "$PKGS" ]; then
  echo "chromium and the emoji font already installed: $(/usr/bin/chromium --version 2>/dev/null || true)"
  exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
$SUDO apt-get update -qq
# shellcheck disable=SC2086 # a list of package names
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $PKGS
/usr/bin/chromium --version
