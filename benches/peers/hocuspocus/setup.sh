#!/usr/bin/env bash
# Installs the Hocuspocus peer's npm packages (idempotent). Node 20 + npm.
# @hocuspocus/server is pinned to 3.4.4: the 4.x line needs Node >= 22.
set -euo pipefail
cd "$(dirname "$0")"
command -v node >/dev/null || { echo "node is not installed (apt-get install nodejs npm)" >&2; exit 1; }
if [ -f package-lock.json ]; then
  npm ci --no-audit --no-fund --loglevel=error
else
  npm install --no-audit --no-fund --loglevel=error
fi
node -e 'console.log("@hocuspocus/server", require("./node_modules/@hocuspocus/server/package.json").version)'
