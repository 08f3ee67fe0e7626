"""A case folder from elsewhere is recomputed before it is trusted: ``python -m oracle.verify
DIR`` and the plugin's ``--verify-cases`` (oracle/verify.py).

The folder holds copies of committed golden cases (forward, training step, invalid input,
quantized, one with a sidecar). Edits are re-signed (tests/robustness/hostile_files.py), so
the default loader accepts them, and the loader's own meaning checks pass too (the edited
numbers stay self-consistent): only recomputing from the inputs can tell.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from oracle.casefile import load_case
from oracle.verify import verify_folder
from tests.robustness import hostile_files as hf

ROOT = Path(__file__).resolve().parents[2]
FWD = "fwd_train_freegamma_batchstats_meanvar_axis1_fp32_4x3_normal"
CASES = (FWD,
         "bwd_train_freegamma_batchstats_nomeanvar_axis1_bf16_4x3_normal",
         "err_axis_range_fp32_4x3_neg",
         "qnt_infer_fixgamma_batchstats_meanvar_axis1_s8_2x3x4x4_qnormal_sym",
         "qnt_infer_fixgamma_batchstats_nomeanvar_axis1_s8_2x17x9x15_qnormal_sym")


@pytest.fixture
def folder(tmp_path) -> Path:
    """A folder with copies of CASES (and their sidecars)."""
    out = tmp_path / "cases"
    out.mkdir()
    for case_id in CASES:
        for source in (ROOT / "cases").glob(f"{case_id}.*"):
            shutil.copy(source, out)
    return out


def change_first_x(doc) -> None:
    """Input edit: x[0, 0] of the forward case becomes 1.5 (it is not 1.5 in the file)."""
    data = doc["inputs"]["x"]["data"]
    assert data[0] != "0x1.8p+0"
    data[0] = "0x1.8p+0"


def run(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "BN_"))}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300, check=False)


def test_untouched_folder_verifies(folder):
    proc = run("-m", "oracle.verify", str(folder), "--jobs", "2")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"verified {len(CASES)} cases" in proc.stdout


def test_changed_input_is_accepted_by_the_loader_but_not_by_verify(folder):
    path = folder / f"{FWD}.yaml"
    hf.mutate(path, change_first_x)
    assert load_case(path).inputs["x"][0, 0] == 1.5  # the loader takes the re-signed file
    proc = run("-m", "oracle.verify", str(folder), "--jobs", "2")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    lines = [line for line in proc.stdout.splitlines() if line.startswith(FWD)]
    assert len(lines) == 1 and "output y: rounded[0, 0] is " in lines[0], proc.stdout
    assert "1 differ from the oracle" in proc.stderr


def test_plugin_refuses_the_run_under_verify_cases(folder, tmp_path):
    hf.mutate(folder / f"{FWD}.yaml", change_first_x)
    common = ("-m", "pytest", "conformance/test_forward.py", "--backend", "numpy", "--cases",
              str(folder), "--report-dir", str(tmp_path / "reports"), "--collect-only", "-q",
              "-p", "no:cacheprovider")
    plain = run(*common)
    assert plain.returncode == 0, plain.stdout + plain.stderr  # accepted by default
    checked = run(*common, "--verify-cases")
    assert checked.returncode == pytest.ExitCode.USAGE_ERROR, checked.stdout + checked.stderr
    assert (f"--verify-cases: 1 of {len(CASES)} cases in {folder}" in checked.stderr
            and f"{FWD}: output y: rounded[0, 0]" in checked.stderr), checked.stderr


def test_every_kind_of_stored_expectation_is_compared(folder):
    """Edits the loader cannot see: a cond doubled (a wider tolerance), a value and its
    rounding moved together, an error case's expected exception changed."""
    def double_cond(doc):
        doc["expected"]["mean"]["cond"][1] *= 2

    def move_value(doc):  # 2.0 rounds to 2.0 in every format: self-consistent
        doc["expected"]["running_var"]["value"][2] = "2.0e+00"
        doc["expected"]["running_var"]["rounded"][2] = "0x1.0p+1"

    def other_exception(doc):
        doc["error"]["exception"] = "TypeError"

    edits = {FWD: double_cond, CASES[1]: move_value, CASES[2]: other_exception}
    for case_id, edit in edits.items():
        hf.mutate(folder / f"{case_id}.yaml", edit)
        load_case(folder / f"{case_id}.yaml")  # accepted by the loader
    checked, problems = verify_folder(folder, jobs=1)
    assert checked == len(CASES)
    found = dict(problems)
    assert set(found) == set(edits), problems
    assert found[FWD].startswith("output mean: cond[1] is "), found[FWD]
    assert found[CASES[1]].startswith("output running_var: "), found[CASES[1]]
    assert found[CASES[2]].startswith("output error: the oracle raises ValueError"), found[CASES[2]]


def test_a_file_the_loader_refuses_is_a_difference(folder):
    path = folder / f"{FWD}.yaml"
    path.write_text(path.read_text().replace("schema: 1", "schema: 2"))  # digest now wrong
    _, problems = verify_folder(folder, jobs=1)
    assert [cid for cid, _ in problems] == [FWD]
    assert problems[0][1].startswith("refused by the loader: "), problems
