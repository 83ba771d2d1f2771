"""Benchmark: does an idempotent re-run of site.yml cost the same for 2 domains as for 200?

Runs against the demo container (start it with `make demo`): for each size, converges a generated site model
(one account and one alias per domain), then times a second, idempotent run and prints the figures.
Finally converges the demo's own inventory again. Usage: python scripts/bench_rerun.py [SIZES...]
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REACH = ["-i", "inventory.example", "-i", "demo/inventory.yml", "-e", "@demo/.state/vault.yml"]
RECAP = re.compile(r"^mx1\.example\.test\s+:\s+ok=(\d+)\s+changed=(\d+).*failed=(\d+)", re.M)
# One SHA512-crypt hash for every generated account: the benchmark measures tables, not hashing.
HASH = "$6$M89SwZdOBVCxPkgO$1oFVYkzc3vttm45JdFht7gMT16SI6bnSZObF572mPis2.rn/ePa4.YG4uMt8QEhGzZijwrGLvXWLjOkyx35Vs/"


def site_model(size: int) -> dict:
    domains = [f"d{i:03d}.bench.test" for i in range(size)]
    return {
        "mail_domains": [{"name": d, "catchall": False} for d in domains],
        "mail_accounts": [{"address": f"user@{d}", "password_hash": HASH} for d in domains],
        "mail_aliases": {f"postmaster@{d}": [f"user@{d}"] for d in domains},
    }


def run_site(*extra: str) -> tuple[float, tuple[int, ...]]:
    start = time.monotonic()
    result = subprocess.run(["ansible-playbook", *REACH, *extra, "playbooks/site.yml"], cwd=ROOT,
                            capture_output=True, text=True, check=False)
    elapsed = time.monotonic() - start
    match = RECAP.search(result.stdout)
    if result.returncode != 0 or not match:
        sys.exit(f"site.yml failed:\n{result.stdout[-3000:]}{result.stderr[-1000:]}")
    return elapsed, tuple(int(n) for n in match.groups())


def main() -> None:
    sizes = [int(a) for a in sys.argv[1:]] or [2, 200]
    print(f"{'domains':>8} {'converge s':>11} {'re-run s':>9} {'tasks ok':>9} {'changed':>8}")
    with tempfile.TemporaryDirectory() as tmp:
        for size in sizes:
            model = Path(tmp) / f"model-{size}.json"
            model.write_text(json.dumps(site_model(size)))
            converge = run_site("-e", f"@{model}")[0]
            rerun, (ok, changed, failed) = run_site("-e", f"@{model}")
            print(f"{size:>8} {converge:>11.1f} {rerun:>9.1f} {ok:>9} {changed:>8}")
    run_site()  # back to the demo's own site model


if __name__ == "__main__":
    main()
