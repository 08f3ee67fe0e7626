"""Failure messages: the suite's one format, numbers that round-trip."""
import re
from decimal import Decimal

import numpy as np

from conformance import messages as msg
from conformance.compare import compare
from oracle.api import Expected


def test_format_value_uses_both_parts():
    hi, lo = 1.0, 2.0**-70
    text = msg.format_value(hi, lo, digits=25)
    assert Decimal(text) == (Decimal(hi) + Decimal(lo)).quantize(Decimal(text))
    assert text.startswith("1.00000000000000000000")  # 1 + 8.5e-22
    assert msg.format_value(1.0, 2.0**-70, digits=30) != msg.format_value(1.0, 0.0, digits=30)


def test_format_got_is_shortest_in_its_dtype():
    assert msg.format_got(np.float16(0.4123), "float16") == str(np.float16(0.4123))
    assert msg.format_got(np.float32(0.1), "float32") == "0.1"
    assert msg.format_got(0.1, "float64") == "0.1"


def failing_result():
    hi = np.array([[0.5, 0.25], [0.125, 0.41180134]])
    e = Expected("y", "float32", hi, np.zeros_like(hi), hi, np.abs(hi))
    got = hi.astype(np.float32)
    got[1, 1] = np.float32(0.4123)
    return compare("y", got, e, limit=8.0), got, e


LINE = re.compile(
    r"^y\[1,1\]=0\.4123 \(0x[0-9a-f.]+p[+-]\d+\) but should be 0\.41180134\d* "
    r"\(0x[0-9a-f.]+p[+-]\d+\) \(err [0-9.e+]+ ulp, [0-9.e+]+ x tol-unit > tol 8\) "
    r"\[case_a on fake\]$")


def test_output_line_format():
    result, got, e = failing_result()
    line = msg.output_line(result, got, e, "case_a on fake")
    assert LINE.match(line), line


def test_failure_message_has_summary_counts_and_repro():
    result, got, e = failing_result()
    repro = msg.repro_command("case_a", "fake")
    text = msg.failure_message("case_a", "fake", "float32 2x2, a summary", [(result, got, e)],
                               repro)
    lines = text.splitlines()
    assert LINE.match(lines[0])
    assert "1 of 4 elements fail" in text
    assert "case: float32 2x2, a summary" in lines
    assert lines[-1] == "repro: python -m conformance.repro case_a --backend fake"


def test_repro_command_quotes_and_repeats_options():
    cmd = msg.repro_command("c", "pkg.mod:factory", "/tmp/my cases", "framework")
    assert cmd == ("python -m conformance.repro c --backend pkg.mod:factory "
                   "--cases '/tmp/my cases' --tolerance framework")


def test_special_value_line_names_the_rule():
    hi = np.array([1.0])
    e = Expected("dx", "float64", hi, np.zeros(1), hi, np.ones(1))
    result = compare("dx", np.array([np.nan]), e, limit=8.0)
    line = msg.output_line(result, np.array([np.nan]), e, "c on b")
    assert line.startswith("dx[0]=nan (nan) but should be 1 (0x1.0p+0) ")
    assert "(NaN where the oracle is finite)" in line


def test_structural_line():
    e = Expected("y", "float16", np.zeros(2), np.zeros(2), np.zeros(2), np.ones(2))
    result = compare("y", np.zeros(2, np.float32), e, limit=1.5)
    assert msg.output_line(result, None, e, "c on b") == (
        "y.dtype=float32 but should be float16 [c on b]")
