"""Shared numerical internals: compute dtypes and error-free transforms."""

import jax
import jax.numpy as jnp
import numpy as np

# Half-precision inputs are computed in float32 and rounded once at the end:
# XLA:CPU runs bfloat16 arithmetic as many small kernels with conversions,
# and every intermediate rounding to 8 bits of mantissa costs accuracy.
_HALF = (jnp.dtype(jnp.bfloat16), jnp.dtype(jnp.float16))


def compute_dtype(dtype: np.dtype) -> np.dtype:
    """The dtype to compute in for inputs of `dtype`: float32 for halves."""
    dtype = jnp.dtype(dtype)
    return jnp.dtype(jnp.float32) if dtype in _HALF else dtype


def upcast(x: jax.Array) -> jax.Array:
    """Returns `x` in its compute dtype (float32 for bf16/f16)."""
    return x.astype(compute_dtype(x.dtype))


def two_diff(a: jax.Array, b: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Error-free difference: returns (d, e) with d + e == a - b exactly.

    This is Knuth's TwoSum applied to (a, -b): d = fl(a - b), and e, the
    rounding error of that subtraction, is recovered exactly in floating
    point (no fast-math reassociation happens in XLA by default). Where a or
    b is infinite, e is NaN; callers mask those entries.
    """
    d = a - b
    b_virtual = d - a
    a_virtual = d - b_virtual
    e = (a - a_virtual) - (b + b_virtual)
    return d, e
