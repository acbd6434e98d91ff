"""Shared test configuration: dtypes, tolerances, hypothesis profile."""

import os

import hypothesis
import jax
import jax.numpy as jnp
import numpy as np
import pytest

# Keep compiled-program caches warm within a test process; no x64 here:
# float64 tests turn it on locally with `jax.experimental.enable_x64`.
jax.config.update("jax_numpy_rank_promotion", "raise")

hypothesis.settings.register_profile(
    "ci",
    max_examples=25,
    deadline=None,
    derandomize=True,
    print_blob=True,
    suppress_health_check=[hypothesis.HealthCheck.too_slow],
)
hypothesis.settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

FLOAT_DTYPES = [jnp.float32, jnp.bfloat16, jnp.float16]

# Worst error allowed against a float64 reference, in ULPs of the output
# dtype, for functions computed in float32 and rounded once.
ULP_TOL = {
    jnp.dtype(jnp.float32): 6,
    jnp.dtype(jnp.bfloat16): 1,
    jnp.dtype(jnp.float16): 1,
}

# Relative tolerance for derivative checks (check_grads), per dtype.
GRAD_TOL = {"atol": 2e-2, "rtol": 2e-2}


@pytest.fixture
def rng():
    """A fresh, fixed-seed NumPy generator for each test."""
    return np.random.default_rng(0)


@pytest.fixture(params=FLOAT_DTYPES, ids=lambda d: jnp.dtype(d).name)
def float_dtype(request):
    return jnp.dtype(request.param)
