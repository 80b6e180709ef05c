#!/usr/bin/env bash
# Installs everything the tests need into .venv (Python packages, Azurite from npm) and runs
# every test against real local servers. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -c scripts/constraints.txt -e ".[all,dev]"
bash scripts/install-backends.sh
.venv/bin/python -m pytest "$@"
