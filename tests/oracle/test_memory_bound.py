"""Peak memory of writing a case grows by a few bytes per element, not by the ~175 it took
when the oracle and the writer held every array whole.

Two single-channel float32 forward cases (2^19 and 2^20 elements, blocks and write
slices of 2^16) are
written in child processes, each reporting its peak RSS; the growth per added element must
stay under GROWTH_BYTES. What still grows is x itself (4 bytes per element, held by the
caller) and the per-leaf sums; the rest is blocks. The full-size measurements (16.8M and 10^8
elements) are in the closing report, not in the default run.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
#: Bytes of peak RSS per added element allowed (x is 4; the whole-array writer took ~175).
GROWTH_BYTES = 16

CHILD = """
import json, resource, sys
from oracle import channels, inputs
from oracle.casefile import write
from oracle.generate import write_case_files
from oracle.plan import user_plan
channels.CHUNK = inputs.GENERATE_CHUNK = write.WRITE_CHUNK = 1 << 16
n = int(sys.argv[1])
spec = next(s for s in user_plan((1, n), "float32", 0,
                                 flags="train,freegamma,batchstats,nomeanvar") if s.op == "fwd")
sizes = write_case_files(spec, sys.argv[2], "cmd")
print(json.dumps({"rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                  "bytes": sum(sizes.values())}))
"""


def _peak(n: int, out: Path) -> dict:
    done = subprocess.run([sys.executable, "-c", CHILD, str(n), str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_peak_memory_grows_by_a_few_bytes_per_element(tmp_path):
    small, large = 1 << 19, 1 << 20
    a = _peak(small, tmp_path / "a")
    b = _peak(large, tmp_path / "b")
    growth = (b["rss_kb"] - a["rss_kb"]) * 1024 / (large - small)
    assert growth < GROWTH_BYTES, (
        f"peak RSS grew {growth:.1f} bytes per element ({a['rss_kb']} kB for {small} "
        f"elements, {b['rss_kb']} kB for {large}), but should grow < {GROWTH_BYTES}")
    assert b["bytes"] > 20 * large  # the file itself is full size: the case was written
