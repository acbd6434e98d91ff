"""Where the float32 softmax error comes from: numerator, sum, division.

    python -m bench.softmax_error [--rows 64] [--width 4096] [--scale 10]

jax_act.softmax computes exp(d) (1 + e), with d + e = x - max exactly
(TwoSum), sums it over the row and divides. Against float64, this prints
the worst error of each step, on rows of normal values times --scale:

* numerator: exp(d) (1 + e) in ULPs, and XLA's float32 exp alone;
* row sum: its relative error in float32 ULPs (units of 2^-23), and the
  part due to summation alone (the float64 sum of the float32 terms);
* softmax: the worst ULP error of the result.

The three add up to the harness's worst case; the README and the closing
notes of the foundation issue quote them to say what limits the accuracy.
"""

import argparse

import jax
import jax.numpy as jnp
import numpy as np

import jax_act
from bench import ulp
from jax_act._numerics import two_diff

EPS = float(np.finfo(np.float32).eps)


@jax.jit
def _steps(x):
    # The same arithmetic as jax_act.softmax on a finite row, step by step.
    shift = jnp.max(x, axis=-1, keepdims=True)
    d, e = two_diff(x, shift)
    numerator = jnp.exp(d) * (1 + e)
    total = jnp.sum(numerator, axis=-1, keepdims=True)
    return d, jnp.exp(d), numerator, total, numerator / total


def run(rows=64, width=4096, scale=10.0, seed=0):
    """The worst error of each step, as a dict."""
    rng = np.random.default_rng(seed)
    x = (scale * rng.standard_normal((rows, width))).astype(np.float32)
    d, exp_d, numerator, total, probs = map(np.asarray, _steps(x))
    x64 = x.astype(np.float64)
    exact = np.exp(x64 - x64.max(axis=-1, keepdims=True))
    exact_total = exact.sum(axis=-1, keepdims=True)
    summed = numerator.astype(np.float64).sum(axis=-1, keepdims=True)
    return {
        "numerator_ulp": ulp.worst_ulp(numerator, exact),
        "exp_alone_ulp": ulp.worst_ulp(exp_d, np.exp(d.astype(np.float64))),
        "sum_ulp": float(np.max(np.abs(total - exact_total) / exact_total))
        / EPS,
        "summation_alone_ulp": float(
            np.max(np.abs(total - summed) / exact_total)
        )
        / EPS,
        "softmax_ulp": ulp.worst_ulp(probs, exact / exact_total),
        # The library itself, to confirm the steps above are its own.
        "jax_act_softmax_ulp": ulp.worst_ulp(
            jax.jit(jax_act.softmax)(x), exact / exact_total
        ),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=64)
    parser.add_argument("--width", type=int, default=4096)
    parser.add_argument("--scale", type=float, default=10.0)
    args = parser.parse_args(argv)
    figures = run(args.rows, args.width, args.scale)
    print(
        f"float32 softmax, {args.rows} rows of {args.width} normal values "
        f"x {args.scale:g}; worst error of each step:"
    )
    for name, value in figures.items():
        print(f"  {name:22s} {value:6.2f}")


if __name__ == "__main__":
    main()
