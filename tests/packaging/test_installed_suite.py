"""The suite as a user's CI gets it (issue 12): built, installed, run from somewhere else.

One test, in steps (each step needs the previous one, and the build is the expensive part):

1. ``python -m build`` makes the sdist from this checkout, then the wheel from that sdist
   (build's default), into a temporary directory. Both must carry every golden case (the
   wheel inside the conformance package, where ``importlib.resources`` finds it) and the wheel
   the compiled CPU backend.
2. A fresh virtual environment installs the wheel (not editable) exactly as the README's CI
   snippet says, with the snippet's ``git+URL`` requirement replaced by that wheel.
3. From an unrelated temporary directory holding the README's example adapter
   (mybn_adapter.py) and deviation list (mybn_deviations.txt), every ``pytest`` line of the
   snippet runs as written: the numpy backend passes every test of every golden case (counts
   checked in the report, against pytest's own count and the case files), and the example
   adapter, found in that directory by plain ``pytest``, passes with its listed deviations.
4. A deviation list naming a case that passes fails the run, naming the entry.

Nothing is written into the checkout (its untracked and ignored files are compared before and
after). Needs the network or a pip cache for the build requirements and dependencies. About
5 minutes on 2 busy cores: the sdist (15 s), compiling the CPU backend into the wheel (80 s),
installing (20 s), the numpy run (65 s), the example adapter's runs (60 s).
"""
from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
CASE_SUFFIXES = (".yaml", ".bin")

pytestmark = pytest.mark.slow


def readme_block(start: str, language: str) -> str:
    """Return the README's fenced block of this language whose first line is start."""
    text = README.read_text(encoding="utf-8")
    blocks = re.findall(rf"```{language}\n(.*?)```", text, re.DOTALL)
    found = [b for b in blocks if b.startswith(start)]
    assert len(found) == 1, f"README.md has {len(found)} ```{language} blocks opening {start!r}"
    return found[0]


def ci_steps() -> list[str]:
    """Return the commands of the README's CI snippet (its ``- run:`` lines), in order."""
    snippet = readme_block("# .github/workflows/batchnorm.yml", "yaml")
    steps = [line.split("- run:", 1)[1].strip() for line in snippet.splitlines()
             if line.strip().startswith("- run:")]
    assert steps and steps[0].startswith("pip install "), steps
    return steps


def run(cmd, cwd: Path, env: dict, timeout: float = 900) -> subprocess.CompletedProcess:
    """Return the finished process (stdout and stderr together); cmd is a list, or a string
    run by bash exactly as written."""
    args = ["bash", "-c", cmd] if isinstance(cmd, str) else cmd
    return subprocess.run(args, cwd=cwd, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=timeout, check=False)


def checked(proc: subprocess.CompletedProcess, what: str) -> str:
    assert proc.returncode == 0, f"{what} exited {proc.returncode}:\n{proc.stdout[-6000:]}"
    return proc.stdout


def new_files() -> set[str]:
    """Return the untracked and ignored entries of the checkout's `git status` (empty outside
    git): what a build or a run could leave behind."""
    proc = subprocess.run(["git", "status", "--porcelain", "--ignored"], cwd=ROOT,
                          capture_output=True, text=True, check=False)
    return {line for line in proc.stdout.splitlines() if line.startswith(("??", "!!"))}


def golden_case_files() -> set[str]:
    return {p.name for p in (ROOT / "cases").iterdir() if p.suffix in CASE_SUFFIXES}


def venv_env(venv: Path) -> dict:
    """Return the environment of a shell with the virtual environment activated."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYTEST_", "PYTHON", "VIRTUAL_ENV", "BN_", "COV_"))}
    env.update(VIRTUAL_ENV=str(venv), PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}",
               PIP_DISABLE_PIP_VERSION_CHECK="1", PYTHONDONTWRITEBYTECODE="1")
    return env


def pytest_counts(output: str) -> dict[str, int]:
    """Return pytest's final tally ("2720 passed, 3 xfailed in 60.1s") as {word: number}."""
    last = [line for line in output.splitlines() if re.search(r"\d+ \w+.* in [\d.]+s", line)]
    assert last, f"no pytest summary line in:\n{output[-3000:]}"
    return {word: int(n) for n, word in re.findall(r"(\d+) (\w+)", last[-1].split(" in ")[0])}


def report(run_dir: Path, backend: str) -> dict:
    return json.loads((run_dir / "bn-reports" / backend / "summary.json").read_text())


def build_and_install(tmp: Path) -> tuple[Path, dict, Path]:
    """Steps 1-2: return (wheel, the fresh venv's environment, sdist)."""
    venv = tmp / "venv"
    checked(run([sys.executable, "-m", "venv", str(venv)], tmp, dict(os.environ)), "venv")
    env = venv_env(venv)
    checked(run("python -m pip install -q build", tmp, env), "pip install build")
    dist = tmp / "dist"
    # sdist from the checkout, then the wheel from that sdist (python -m build's default)
    checked(run(["python", "-m", "build", "--outdir", str(dist), str(ROOT)], tmp, env,
                timeout=1800), "python -m build")
    (sdist,), (wheel,) = sorted(dist.glob("*.tar.gz")), sorted(dist.glob("*.whl"))
    install = ci_steps()[0]
    requirement = re.match(r'pip install ("[^"]+"|\S+)', install).group(1)
    checked(run(install.replace(requirement, shlex.quote(str(wheel)), 1), tmp, env),
            "the README's pip install")
    return wheel, env, sdist


def check_archives(wheel: Path, sdist: Path) -> None:
    """Step 1's checks: every golden case in both, the CPU backend compiled into the wheel."""
    cases = golden_case_files()
    with zipfile.ZipFile(wheel) as whl:
        names = whl.namelist()
    in_wheel = {n.rpartition("/")[2] for n in names if n.startswith("conformance/cases/")}
    assert cases <= in_wheel and len(cases) >= 1000, f"wheel lacks {sorted(cases - in_wheel)[:5]}"
    assert any(re.match(r"backends/cpu/_bn_cpu\..*(so|pyd)$", n) for n in names), \
        "the wheel has no compiled CPU backend (backends/cpu/_bn_cpu)"
    assert "conformance/known_deviations/README.md" in names
    with tarfile.open(sdist) as tar:
        in_sdist = {Path(n).name for n in tar.getnames() if Path(n).parent.name == "cases"}
    assert cases <= in_sdist, f"sdist lacks {sorted(cases - in_sdist)[:5]}"


def test_installed_wheel_runs_the_readme_ci_snippet(tmp_path):
    before = new_files()
    wheel, env, sdist = build_and_install(tmp_path)
    check_archives(wheel, sdist)
    work = tmp_path / "user-project"  # unrelated to the checkout: nothing of it on sys.path
    work.mkdir()
    (work / "mybn_adapter.py").write_text(readme_block("# mybn_adapter.py", "python"))
    (work / "mybn_deviations.txt").write_text(readme_block("# mybn_deviations.txt", "text"))
    where = checked(run("python -c 'import conformance.cases as c; print(c.DEFAULT_CASES_DIR)'",
                        work, env), "locating the cases")
    assert Path(where.strip()).is_relative_to(tmp_path / "venv"), where

    steps = [s for s in ci_steps() if s.startswith("pytest ")]
    numpy_step = [s for s in steps if "--backend numpy" in s]
    assert len(numpy_step) == 1 and "--pyargs conformance" in numpy_step[0], steps
    for step in steps:
        out = checked(run(step, work, env), step)
        if step in numpy_step:  # a clean run prints no warning (the example adapter's numpy may)
            assert "warning" not in out.lower(), f"{step} printed a warning:\n{out[-4000:]}"
            numpy_out = out
        else:
            user_out, user_step = out, step

    # numpy: every test of every golden case ran and passed, the report agrees with pytest
    doc = report(work, "numpy")
    tally = pytest_counts(numpy_out)
    assert set(tally) == {"passed"}, tally
    assert doc["counts"] == {"pass": tally["passed"], "fail": 0, "error": 0, "skip": 0,
                             "xfail": 0, "xpass": 0}
    case_ids = {Path(name).stem for name in golden_case_files() if name.endswith(".yaml")}
    judged = {r["id"] for r in doc["results"] if r.get("id") in case_ids}
    assert judged == case_ids, f"cases not run: {sorted(case_ids - judged)[:5]}"
    assert tally["passed"] > len(case_ids)  # fwd/bwd cases have two tests each, plus generated
    assert doc["environment"]["cases_dir"] == "conformance/cases"  # the packaged cases
    assert (work / "bn-reports" / ".gitignore").read_text().splitlines()[-1] == "*"

    # the example adapter: found in the run directory, its listed deviations are xfails
    user = report(work, "mybn")
    listed = [line for line in (work / "mybn_deviations.txt").read_text().splitlines()
              if line.strip() and not line.startswith("#")]
    assert user["environment"]["known_deviations"] == "mybn_deviations.txt", user_step
    assert user["counts"]["fail"] == user["counts"]["error"] == user["counts"]["xpass"] == 0
    assert user["counts"]["xfail"] >= len(listed) and user["counts"]["pass"] > 100, user["counts"]
    assert pytest_counts(user_out)["xfailed"] == user["counts"]["xfail"]

    # nothing beside the user's files but the (self-ignoring) report folder: Hypothesis's own
    # folder goes inside it; __pycache__ (Python's, from importing the adapter) and .pytest_cache
    # (pytest's) are what any test run leaves
    assert {p.name for p in work.iterdir()} - {"__pycache__", ".pytest_cache"} == {
        "mybn_adapter.py", "mybn_deviations.txt", "bn-reports"}, sorted(work.iterdir())

    # step 4: a listed case that passes fails the run, naming the entry
    passing = next(r for r in user["results"] if r["outcome"] == "pass" and r.get("op") == "fwd")
    (work / "mine.txt").write_text(f"{passing['test']}::{passing['id']}  # listed, but passes\n")
    strict = run(f"pytest --pyargs conformance --backend mybn_adapter:factory "
                 f"--deviations mine.txt -k {passing['id']}", work, env)
    assert strict.returncode == 1, strict.stdout[-3000:]
    assert (f"[XPASS(strict)] known deviation mine.txt:1 {passing['test']}::{passing['id']}: "
            "listed, but passes") in strict.stdout
    left = new_files() - before
    assert not left, f"the round trip left files in the checkout: {sorted(left)}"
