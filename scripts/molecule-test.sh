#!/usr/bin/env bash
# `molecule test` for each scenario named, one after another, stopping at the first that fails. The whole output
# is kept in .cache/molecule-<scenario>.log; when a scenario fails, what failed (tasks, tests) is printed last,
# where the tail of a CI log shows it.
set -uo pipefail
cd "$(dirname "$0")/.." || exit
mkdir -p .cache
for scenario in "$@"; do
  log=".cache/molecule-$scenario.log"
  junit=".cache/verify-$scenario.xml"
  rm -f "$junit"
  echo "== molecule test -s $scenario ($(date -u +%T))"
  SECONDS=0
  molecule test -s "$scenario" 2>&1 | tee "$log"
  status=${PIPESTATUS[0]}
  echo "== molecule test -s $scenario: exit $status after $SECONDS s"
  if [ "$status" -ne 0 ]; then
    echo "== what failed in scenario $scenario (the whole output: $log)"
    python scripts/molecule_failures.py "$log" "$junit"
    exit "$status"
  fi
done
