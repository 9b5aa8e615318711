#!/usr/bin/env bash
# The test command: README's "Development" and CI's (.ci/run) run exactly this, from the
# repository root of a fresh checkout. It installs what the tests need and runs them all:
#   Chromium (Debian's package, when absent: the browser tests open report.html and the
#   Prefect UI in it headless), .venv with the test and docs extras, the Prefect-facing tests on
#   the oldest supported Prefect release (.ci/prefect-matrix.sh), the documentation site
#   (`mkdocs build --strict`: a broken link or a missing API reference fails it), the suite.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v chromium >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } >/dev/null 2>&1 \
    || echo 'harness: chromium could not be installed (needs root and the Debian archive): the browser tests will be skipped (under CI they fail)'
python3 -m venv .venv
.venv/bin/pip install -e '.[test,docs]'
bash .ci/prefect-matrix.sh
# Material prints a banner about MkDocs 2 on every build; it says nothing about this site.
export NO_MKDOCS_2_WARNING=1
.venv/bin/mkdocs build --strict --quiet
.venv/bin/python -m pytest -q
