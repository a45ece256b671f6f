"""What the test files share: the long-sweep switch, hypothesis settings, and the independent
references (ml_dtypes/NumPy types) for the formats that have one."""

import os

import ml_dtypes
import numpy as np
from hypothesis import HealthCheck, settings


#: ``LOWPREC_LONG=1`` turns on the long randomized sweeps.
LONG = os.environ.get("LOWPREC_LONG") == "1"

HYPOTHESIS = settings(max_examples=2000 if LONG else 150, deadline=None,
                      suppress_health_check=[HealthCheck.too_slow])

#: Formats that ml_dtypes (or NumPy) has, with their twin type.
ML_TYPES = {
    "e5m2": ml_dtypes.float8_e5m2,
    "e4m3": ml_dtypes.float8_e4m3fn,
    "e3m2": ml_dtypes.float6_e3m2fn,
    "e2m3": ml_dtypes.float6_e2m3fn,
    "e2m1": ml_dtypes.float4_e2m1fn,
    "bf16": ml_dtypes.bfloat16,
    "fp16": np.float16,
}
