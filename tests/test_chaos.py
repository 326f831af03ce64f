"""The chaos run, short: real node processes under kills and wallbox link cuts for 30 s,
then the co-op's whole ledger audited, every node's feeds compared with it, slots and
receipts checked (exit 1 if not)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent


@pytest.mark.timeout(400)
def test_short_chaos_run_loses_nothing():
    result = subprocess.run(
        [sys.executable, "-m", "bench.chaos", "--minutes", "0.5", "--hosts", "3", "--drivers", "3",
         "--fault-every", "3"], cwd=ROOT, capture_output=True, text=True, timeout=380,
        env={**os.environ, "COLUMNS": "160"})
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-3000:]
    out = result.stdout
    assert "receipts lost (must be 0)" in out and "faults injected: " in out
    settled = int(next(line for line in out.splitlines() if "sessions settled" in line).split("│")[2])
    assert settled >= 1  # load really ran
