"""The quantized path (op "qnt"): int8 ``out`` exact, or off by one only next to a rounding
boundary (conformance/tolerances.py, QUANTIZED_TABLE); ``min_out``/``max_out`` exact; invalid
calls raise the expected exception naming the parameter, with nothing written."""
import pytest

from conformance.quantized import check_quantized


@pytest.mark.bn_cases("qnt")
def test_quantized(case_id, conformance):
    case = conformance.case(case_id)
    if case.error is not None:
        conformance.check_error(case)
    else:
        check_quantized(conformance, case)
