#!/usr/bin/env bash
# Installs the Socket.IO peer's npm packages (idempotent). Node 20 + npm.
set -euo pipefail
cd "$(dirname "$0")"
command -v node >/dev/null || { echo "node is not installed (apt-get install nodejs npm)" >&2; exit 1; }
if [ -f package-lock.json ]; then
  npm ci --no-audit --no-fund --loglevel=error
else
  npm install --no-audit --no-fund --loglevel=error
fi
node -e 'console.log("socket.io", require("socket.io/package.json").version)'
