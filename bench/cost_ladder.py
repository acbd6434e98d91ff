"""What the extra precision costs: each function beside cheaper formulas.

    python -m bench.cost_ladder [--shape 4096x4096] [--repeats 21]
                                [--family softmax gelu_tanh ...]

For the float32 functions that are slower than `jax.nn` (softmax and the
logistic-gated activations), this times a ladder of formulas in one
process, interleaved round by round: `jax.nn`'s, the same maths written
plainly, then jax_act's with one safeguard at a time added, up to
jax_act's own. Beside each rung it prints the worst float32 error on the
accuracy harness's inputs, so that every step in time can be read
against what it buys. Forward passes only: the ladder attributes the
forward cost; the report has the rest.

Run it under the allocator you care about: GLIBC_TUNABLES=
glibc.malloc.hugetlb=1 removes most page faults, leaving the arithmetic
that the rungs differ in.
"""

from __future__ import annotations

import argparse
import functools
import os
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

import jax_act
from bench import cases_gelu, cases_softmax, timing, ulp
from jax_act import _gelu, _softmax
from jax_act._numerics import x_logistic


class Rung(NamedTuple):
    name: str
    fn: Callable[[jax.Array], jax.Array]
    note: str


# --- The ladders ---

_BETA = np.float32(_gelu.SIGMOID_BETA)


def _plain_softmax(x):
    shifted = jnp.exp(x - jnp.max(x, axis=-1, keepdims=True))
    return shifted / jnp.sum(shifted, axis=-1, keepdims=True)


def _softmax_without_twosum(x):
    # jax_act's kernel (special rows, custom rule) with precise=False, the
    # path half-precision inputs take.
    return _softmax._softmax(x, None, None, (x.ndim - 1,), None, False)


def _tanh_argument(x):
    # 2z = A x + B x^3 rounded once, x clamped where the gate is 0 or 1:
    # the half-precision path of jax_act's tanh form.
    return _gelu._tanh_parts_plain(x).u_hi


def _tanh_tail_kept(x):
    return x_logistic(x, _tanh_argument(x))


LADDERS = {
    "softmax": [
        Rung("jax.nn.softmax", jax.nn.softmax, "baseline"),
        Rung("plain", _plain_softmax, "exp(x - max) / sum"),
        Rung(
            "no TwoSum",
            _softmax_without_twosum,
            "jax_act's kernel: clamps for +-inf rows, empty rows",
        ),
        Rung("jax_act", jax_act.softmax, "+ TwoSum of x - max into exp"),
    ],
    "gelu_sigmoid": [
        Rung(
            "jax.nn",
            lambda x: x * jax.nn.sigmoid(_BETA * x),
            "baseline: x sigmoid(1.702 x)",
        ),
        Rung(
            "plain",
            lambda x: x / (1 + jnp.exp(-_BETA * x)),
            "x / (1 + e^-u)",
        ),
        Rung(
            "tail kept normal",
            lambda x: x_logistic(x, _BETA * x),
            "shifted exp: normal results below u = -87.3",
        ),
        Rung(
            "jax_act",
            lambda x: jax_act.gelu(x, approximate="sigmoid"),
            "+ u's rounding error folded into exp",
        ),
    ],
    "gelu_tanh": [
        Rung("jax.nn", jax.nn.gelu, "baseline: 0.5 x (1 + tanh z)"),
        Rung(
            "plain",
            lambda x: x / (1 + jnp.exp(-_tanh_argument(x))),
            "x sigmoid(2z), 2z rounded",
        ),
        Rung("tail kept normal", _tanh_tail_kept, "shifted exp"),
        Rung("jax_act", jax_act.gelu, "+ 2z to 36 bits, folded into exp"),
    ],
    "silu": [
        Rung("jax.nn.silu", jax.nn.silu, "baseline"),
        Rung("plain", lambda x: x / (1 + jnp.exp(-x)), "x / (1 + e^-x)"),
        Rung("jax_act", jax_act.silu, "shifted exp: normal results kept"),
    ],
}


# --- Accuracy of each rung ---


# The accuracy harness's float64 references and sweeps.
_FORMS = {"gelu_sigmoid": "sigmoid", "gelu_tanh": "tanh", "silu": "silu"}


def _accuracy_inputs(family: str, points: int) -> tuple[np.ndarray, Callable]:
    """Inputs and float64 reference, as the accuracy harness has them."""
    if family == "softmax":
        rows = max(points // 4096, 1)
        rng = np.random.default_rng(0)
        x = 10.0 * rng.standard_normal((rows, 4096))
        reference = functools.partial(
            cases_softmax.softmax_reference, method="float64"
        )
        return x.astype(np.float32), reference
    form = _FORMS[family]
    x = np.linspace(cases_gelu.LEFT_END[form], 10.0, points, dtype=np.float32)
    return x, functools.partial(cases_gelu.gelu_reference, form)


# --- Running ---


def run(
    families=tuple(LADDERS), shape=(4096, 4096), repeats=21, points=2_000_001
):
    """Rows of (family, rung, note, ms, ratio to the first rung, ULP)."""
    rows = []
    for family in families:
        ladder = LADDERS[family]
        x = jax.random.normal(jax.random.key(0), shape, jnp.float32) * 3
        thunks = {}
        for rung in ladder:
            compiled, _ = timing.compile_jitted(rung.fn, (x,))
            thunks[rung.name] = timing.jax_thunk(compiled, (x,))
        times = timing.time_interleaved(thunks, repeats=repeats)
        probe, reference = _accuracy_inputs(family, points)
        want = reference(probe)
        base = times[ladder[0].name]
        for rung in ladder:
            ratio = timing.paired_ratio(times[rung.name], base)
            got = jax.jit(rung.fn)(jnp.asarray(probe))
            rows.append(
                {
                    "family": family,
                    "rung": rung.name,
                    "note": rung.note,
                    "ms": times[rung.name]["median"],
                    "ratio": ratio,
                    "worst_ulp": ulp.worst_ulp(got, want),
                }
            )
    return rows


def _format(rows) -> str:
    lines = [
        "| family | rung | what it adds | fwd ms | / baseline [IQR] "
        "| worst ULP |",
        "| :-- | :-- | :-- | --: | --: | --: |",
    ]
    for r in rows:
        q = r["ratio"]
        lines.append(
            f"| {r['family']} | {r['rung']} | {r['note']} | {r['ms']:.3g} "
            f"| {q['median']:.2f} [{q['q25']:.2f}-{q['q75']:.2f}] "
            f"| {r['worst_ulp']:.3g} |"
        )
    return "\n".join(lines)


def _shape(text: str) -> tuple[int, ...]:
    return tuple(int(n) for n in text.lower().split("x"))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=_shape, default=(4096, 4096))
    parser.add_argument("--repeats", type=int, default=21)
    parser.add_argument(
        "--family", nargs="+", choices=sorted(LADDERS), default=list(LADDERS)
    )
    args = parser.parse_args(argv)
    rows = run(args.family, args.shape, args.repeats)
    tunables = os.environ.get("GLIBC_TUNABLES", "(unset)")
    print(f"float32 {args.shape}, forward; GLIBC_TUNABLES={tunables}")
    print(_format(rows))


if __name__ == "__main__":
    main()
