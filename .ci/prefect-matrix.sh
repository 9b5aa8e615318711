#!/usr/bin/env bash
# The Prefect-facing tests on one Prefect 3 release, in a venv of its own (issue 14, "any
# Prefect 3"). The main venv tests the newest release pyproject allows; this tests another,
# by default the oldest supported one, so the pin in pyproject.toml is a tested claim.
#
#   .ci/prefect-matrix.sh [PREFECT_VERSION]      # default: the oldest supported release
#
# Environment: PYTHON (interpreter to build the venv from, default python3), MATRIX_VENV (where
# the venv goes, default $TMPDIR/harness-prefect-VERSION; reused when it exists).
set -euo pipefail
cd "$(dirname "$0")/.."

# The floor of `prefect>=3.6` in pyproject.toml: change both together.
OLDEST_SUPPORTED="3.6.0"
version="${1:-$OLDEST_SUPPORTED}"
venv="${MATRIX_VENV:-${TMPDIR:-/tmp}/harness-prefect-$version}"
# The harness caches a migrated database per Prefect release; a cache of its own keeps this
# run from touching the main venv's.
export HARNESS_CACHE_DIR="$venv/harness-cache"

# What a Prefect release needs and its own metadata does not say. 3.6.x deletes its routers'
# `routes` after including them, which FastAPI 0.137+ still reads on every request (500s).
case "$version" in
    3.6.*) extra=("fastapi<0.137") ;;
    *) extra=() ;;
esac

[ -x "$venv/bin/python" ] || "${PYTHON:-python3}" -m venv "$venv"
# The harness's declared dependencies and test extra, with Prefect held at `version`; pip picks
# the newest prefect-dask the pin in pyproject allows that accepts it.
"$venv/bin/pip" install -q ".[test]" "prefect==$version" "${extra[@]}"
"$venv/bin/python" -c 'import prefect, prefect_dask; import fastapi; print("prefect", prefect.__version__, "| prefect-dask", prefect_dask.__version__, "| fastapi", fastapi.__version__)'

# The source tree first on the path: the tests exercise this checkout, not the installed copy.
# The tests that talk to Prefect's own interfaces: the server and settings (runtime), the
# context the lean patch touches (lean), flows, tasks and the API read back (flows). The rest of
# the suite drives these same interfaces through the harness and runs on the newest release.
PYTHONPATH="$PWD" "$venv/bin/python" -m pytest -x -q -p no:cacheprovider \
    tests/test_runtime.py tests/test_lean.py tests/test_flows.py
