#!/usr/bin/env bash
# The full test suite: set up, then pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh "$@"
.venv/bin/python -m pytest -q -ra tests
