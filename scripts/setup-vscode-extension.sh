#!/usr/bin/env bash
# Build vscode-extension/ghostpilot.vsix (offline from GitHub: npm only).
#
# Idempotent: `npm ci` only when node_modules is missing or older than package-lock.json,
# and the package step only when a source is newer than the .vsix. Prints the .vsix path.
set -euo pipefail

EXTENSION=$(cd "$(dirname "${BASH_SOURCE[0]}")/../vscode-extension" && pwd)
VSIX=$EXTENSION/ghostpilot.vsix
log() { printf '[setup-vscode-extension] %s\n' "$*" >&2; }

cd "$EXTENSION"
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
    log "npm ci"
    npm ci --no-audit --no-fund --loglevel=error
fi
newest=$(find src package.json tsconfig.json scripts README.md LICENSE .vscodeignore -type f -newer "$VSIX" 2>/dev/null | head -n 1 || true)
if [ ! -f "$VSIX" ] || [ -n "$newest" ]; then
    log "npm test && npm run package"
    if ! output=$(npm test 2>&1); then
        printf '%s\n' "$output" >&2
        log "unit tests failed"
        exit 1
    fi
    npm run package --silent
fi
echo "$VSIX"
