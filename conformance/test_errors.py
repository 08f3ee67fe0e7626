"""Invalid inputs: the expected exception class, the parameter named in its message, and
every input array bit-identical afterwards (nothing written before the check)."""
import pytest


@pytest.mark.bn_cases("err")
def test_errors(case_id, conformance):
    case = conformance.case(case_id)
    conformance.check_error(case)
