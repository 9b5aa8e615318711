#!/usr/bin/env bash
# Regenerates docs/examples/: the complete run folders of two real runs, committed so a
# reader can open a report before installing anything (docs/index.md, "Example reports").
#
#   scripts/regenerate-examples.sh          # ~15 minutes on an idle 2-core machine
#
# Run it on an idle machine (the figures are measurements) from a clean checkout of the commit
# docs/measurements.md quotes, after the install command (docs/getting-started.md).
# tests/test_example_reports.py fails when the report's format changes and these folders were
# not regenerated (or re-rendered with `.venv/bin/harness report docs/examples/NAME` when only
# the presentation changed).
set -euo pipefail
cd "$(dirname "$0")/.."

harness=.venv/bin/harness
out=docs/examples
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

run() {  # run WORKLOAD [ARGS...]: the run folder is the last line harness prints
    local folder name
    folder=$("$harness" run "$@" --out "$scratch" | tail -n 1)
    name=$(basename "$(dirname "$folder")")
    rm -rf "${out:?}/$name"
    mkdir -p "$out"
    cp -r "$folder" "$out/$name"
    echo "$out/$name"
}

# The headline workload at its defaults (repeats = "auto": rounds until adaptive's ratios
# settle, within [run] budget_s).
run workloads/large.toml
# One dynamic-workflow pattern: branching against its static twin; 4 repeats, the fewest
# that give a verdict.
run workloads/branching_large.toml --repeats 4
