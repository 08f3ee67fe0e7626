"""The profiles in bnspec.profiles name only variants the oracle computes."""
import pytest

from bnspec import profiles
from oracle.variants import QUANTIZED_VARIANTS, VARIANTS

PROFILES = {name: value for name, value in vars(profiles).items() if name.endswith("_PROFILE")}


def test_profiles_module_is_not_empty():
    assert PROFILES, "bnspec.profiles defines no *_PROFILE tuple"


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_profile_names_known_variants(name):
    value = PROFILES[name]
    assert isinstance(value, tuple) and value, f"{name}={value!r}, but should be a non-empty tuple"
    unknown = sorted(set(value) - VARIANTS.keys() - QUANTIZED_VARIANTS.keys())
    assert not unknown, f"{name} names unknown variants {unknown} [oracle.variants]"
    assert len(set(value)) == len(value), f"{name}={value!r} repeats a name"


def test_mxnet_quantized_profile_is_every_quantized_variant():
    """MXNet 1.9.1's oneDNN kernel shows all three quantized differences (README "Quantized
    path"; tests/oracle/test_quantized.py reproduces its recorded outputs with this profile)."""
    assert set(profiles.MXNET_QUANTIZED_PROFILE) == {"qnt_slope_eps_twice", "qnt_shift_127.5",
                                                     "qnt_uint8_requantized"}
    assert set(profiles.MXNET_QUANTIZED_PROFILE) <= QUANTIZED_VARIANTS.keys()
