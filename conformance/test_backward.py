"""Gradients (dx, dgamma, dbeta) of every training-step case (forward + backward)."""
import pytest

from conformance.checks import BACKWARD_CHECKED


@pytest.mark.bn_cases("bwd")
def test_backward(case_id, conformance):
    case = conformance.case(case_id)
    conformance.check_outputs(case, BACKWARD_CHECKED)
