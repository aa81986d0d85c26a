#!/usr/bin/env bash
# The full test suite: set up, start a throwaway local Slurm cluster (as root, unless SLURM_CONF
# already points at one or CURATE_SKIP_SLURM=1), run pytest, stop the cluster.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --torch "$@"
echo "== ruff check"
.venv/bin/ruff check .
if [ -z "${SLURM_CONF:-}" ] && [ "${CURATE_SKIP_SLURM:-0}" != 1 ] && [ "$(id -u)" = 0 ]; then
  CURATE_SLURM_DIR="$(mktemp -d /tmp/curate-slurm-test.XXXXXX)"
  trap 'bash scripts/slurm-local-cluster.sh down "$CURATE_SLURM_DIR"; rm -rf "$CURATE_SLURM_DIR"' EXIT
  # A small MaxArraySize proves that long arrays are split; its own ports leave any other cluster alone.
  MAX_ARRAY_SIZE=10 SLURM_PORT_BASE=17817 bash scripts/slurm-local-cluster.sh up "$CURATE_SLURM_DIR" >/dev/null
  export SLURM_CONF="$CURATE_SLURM_DIR/etc/slurm.conf" CURATE_REQUIRE_SLURM=1
elif [ -z "${SLURM_CONF:-}" ]; then
  echo "note: no Slurm cluster for the tests (needs root, or export SLURM_CONF); its tests are skipped" >&2
fi
# Two workers: most tests wait on ffmpeg and task subprocesses; the Slurm tests share one worker.
.venv/bin/python -m pytest -q -ra --durations=12 -n "${CURATE_TEST_WORKERS:-2}" --dist loadgroup tests
