"""Record MXNet 1.9.1's int8 output on the golden quantized cases it runs (axis 1, valid):
``python tests/oracle/record_mxnet_quantized.py`` (needs .venv-mxnet: python -m backends.mxnet_env).

Writes tests/oracle/data/mxnet_quantized_observed.json: {"mxnet": version, "cases":
{case id: base64 of the int8 output in C order}}. tests/oracle/test_quantized.py checks
that oracle.evaluate_quantized with MXNET_QUANTIZED_PROFILE reproduces every recorded
element, and that the spec's formula does not, so the observation stays on record without
MXNet installed.
"""
from __future__ import annotations

import base64
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
OUT = Path(__file__).resolve().parent / "data" / "mxnet_quantized_observed.json"


def main() -> int:
    sys.path.insert(0, str(ROOT))
    from backends.mxnet_adapter import factory
    from conformance.cases import DEFAULT_CASES_DIR
    from conformance.runner import run_case
    from oracle.casefile import load_cases

    backend = factory()
    observed = {}
    for case in load_cases(DEFAULT_CASES_DIR, r"^qnt_"):
        if case.error is not None or case.axis % len(case.shape) != 1:
            continue
        out = run_case(backend, case)["out"]
        observed[case.id] = base64.b64encode(np.ascontiguousarray(out, np.int8).tobytes()).decode()
    OUT.write_text(json.dumps({"mxnet": backend.version, "cases": observed}, indent=1,
                              sort_keys=True) + "\n")
    print(f"wrote {len(observed)} cases to {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
