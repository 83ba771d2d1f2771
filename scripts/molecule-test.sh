#!/usr/bin/env bash
# `molecule test` for each scenario named, side by side: each has its own containers and Docker network, and
# their verify steps spend most of their time waiting for mail, so two of them share the CI machine's two cores
# well. SEQUENTIAL=1 runs them one after another instead. Each scenario's whole output is kept in
# .cache/molecule-<scenario>.log and printed once it has finished; when a scenario fails, what failed (tasks,
# tests) is printed after it, where the tail of a CI log shows it. The figures of each scenario's kill -9 runs
# are printed after it. The exit status is that of the first scenario that failed.
set -uo pipefail
cd "$(dirname "$0")/.." || exit
mkdir -p .cache

run_scenario() {
  local scenario=$1
  SECONDS=0
  molecule test -s "$scenario" > ".cache/molecule-$scenario.log" 2>&1
  echo "$? $SECONDS" > ".cache/molecule-$scenario.status"
}

report() {
  local scenario=$1 status seconds
  read -r status seconds < ".cache/molecule-$scenario.status"
  echo "== molecule test -s $scenario: its output"
  cat ".cache/molecule-$scenario.log"
  echo "== molecule test -s $scenario: exit $status after $seconds s"
  times+=("$scenario $seconds s")
  # The verify step's kill -9 runs (test_chaos.py), duplicates included, whatever their tests' outcome.
  cat .cache/chaos-"$scenario"-*.txt 2>/dev/null
  if [ "$status" -ne 0 ]; then
    echo "== what failed in scenario $scenario (the whole output: .cache/molecule-$scenario.log)"
    python scripts/molecule_failures.py ".cache/molecule-$scenario.log" ".cache/verify-$scenario.xml"
    # Kept by molecule/shared/cleanup.yml before the hosts were destroyed.
    for journal in .cache/journal-"$scenario"-*.txt; do
      [ -f "$journal" ] || continue
      echo "== the end of $journal"
      tail -n 60 "$journal"
    done
    [ "$exit_status" -ne 0 ] || exit_status=$status
  fi
}

scenarios=("$@")
times=()
exit_status=0
pids=()
for scenario in "${scenarios[@]}"; do
  rm -f ".cache/verify-$scenario.xml" ".cache/molecule-$scenario.status" .cache/chaos-"$scenario"-*.txt \
    .cache/journal-"$scenario"-*.txt
  echo "== molecule test -s $scenario ($(date -u +%T))"
  if [ "${SEQUENTIAL:-0}" = 1 ]; then
    run_scenario "$scenario"
    report "$scenario"
    [ "$exit_status" -eq 0 ] || exit "$exit_status"
  else
    run_scenario "$scenario" &
    pids+=($!)
  fi
done
if [ "${SEQUENTIAL:-0}" != 1 ]; then
  for index in "${!pids[@]}"; do
    wait "${pids[$index]}"
    report "${scenarios[$index]}"
  done
fi
# Where the suite's time goes (the CI budget): each scenario's run, together at the end of the log.
if [ "${#times[@]}" -gt 0 ]; then printf '== scenario times:'; printf ' %s;' "${times[@]}"; echo; fi
exit "$exit_status"
