#!/usr/bin/env bash
# `molecule test` for each scenario named, one after another, stopping at the first that fails. The whole output
# is kept in .cache/molecule-<scenario>.log; when a scenario fails, what failed (tasks, tests) is printed last,
# where the tail of a CI log shows it. The figures of each scenario's kill -9 runs are printed after it.
set -uo pipefail
cd "$(dirname "$0")/.." || exit
mkdir -p .cache
times=()
for scenario in "$@"; do
  log=".cache/molecule-$scenario.log"
  junit=".cache/verify-$scenario.xml"
  rm -f "$junit" .cache/chaos-"$scenario"-*.txt .cache/journal-"$scenario"-*.txt
  echo "== molecule test -s $scenario ($(date -u +%T))"
  SECONDS=0
  molecule test -s "$scenario" 2>&1 | tee "$log"
  status=${PIPESTATUS[0]}
  echo "== molecule test -s $scenario: exit $status after $SECONDS s"
  times+=("$scenario $SECONDS s")
  # The verify step's kill -9 runs (test_chaos.py), duplicates included, whatever their tests' outcome.
  cat .cache/chaos-"$scenario"-*.txt 2>/dev/null
  if [ "$status" -ne 0 ]; then
    echo "== what failed in scenario $scenario (the whole output: $log)"
    python scripts/molecule_failures.py "$log" "$junit"
    # Kept by molecule/shared/cleanup.yml before the hosts were destroyed.
    for journal in .cache/journal-"$scenario"-*.txt; do
      [ -f "$journal" ] || continue
      echo "== the end of $journal"
      tail -n 60 "$journal"
    done
    exit "$status"
  fi
done
# Where the suite's time goes (the CI budget): each scenario's run, together at the end of the log.
if [ "${#times[@]}" -gt 0 ]; then printf '== scenario times:'; printf ' %s;' "${times[@]}"; echo; fi
