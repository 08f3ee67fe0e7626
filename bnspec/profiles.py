"""Named variant lists that backends declare as their semantic profile.

A profile is a tuple of variant names (``Capabilities.profile`` /
``Capabilities.quantized_profile``); the oracle defines what each name means
(``oracle.variants``) and checks that every name here is one it knows
(tests/oracle/test_bnspec_profiles.py). Backends take the names from here, never from the oracle.
"""
from __future__ import annotations

#: MXNet 1.9.1 CPU (oneDNN) quantized batch norm as observed: all three quantized variants
#: (tests/oracle/test_quantized.py, README "Quantized path").
MXNET_QUANTIZED_PROFILE: tuple[str, ...] = ("qnt_slope_eps_twice", "qnt_shift_127.5",
                                            "qnt_uint8_requantized")
