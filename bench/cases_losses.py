"""Benchmark cases of the cross-entropy losses, against Optax.

The backward pass times the gradient with respect to the first argument
(the logits, or the hidden states of the fused loss), as the speed harness
does for every case. The fused loss's memory, and its gradient with
respect to the weight as well, are measured by bench/memory.py.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import optax

import jax_act
from bench.registry import SpeedCase, register

# (examples, classes): a square one, and a language-model output layer
# (256 MiB of float32 logits). The (8192, 32768), 1 GiB of
# logits, is timed by bench/memory.py instead: at a few seconds a call
# (PyTorch included) it took a sixth of the ten-minute report here.
LOGIT_SHAPES = ((4096, 4096), (2048, 32768))
QUICK_LOGIT_SHAPES = ((8, 128),)


def _integer_args(shape, dtype, rng):
    *batch, classes = shape
    logits = 3 * rng.standard_normal(shape, dtype=np.float32)
    labels = rng.integers(0, classes, size=batch).astype(np.int32)
    return logits.astype(dtype), labels


def _probability_args(shape, dtype, rng):
    logits = 3 * rng.standard_normal(shape, dtype=np.float32)
    scores = rng.standard_normal(shape, dtype=np.float32)
    labels = np.exp(scores - scores.max(-1, keepdims=True))
    labels /= labels.sum(-1, keepdims=True)
    return logits.astype(dtype), labels.astype(dtype)


def _torch_integer(logits, labels):
    import torch

    return torch.nn.functional.cross_entropy(
        logits.float(), labels.long(), reduction="none"
    ).to(logits.dtype)


register(
    SpeedCase(
        name="softmax_cross_entropy_with_integer_labels",
        ours=jax_act.softmax_cross_entropy_with_integer_labels,
        baseline=optax.softmax_cross_entropy_with_integer_labels,
        make_args=_integer_args,
        shapes=LOGIT_SHAPES,
        quick_shapes=QUICK_LOGIT_SHAPES,
        torch=_torch_integer,
    )
)
register(
    SpeedCase(
        name="softmax_cross_entropy",
        ours=jax_act.softmax_cross_entropy,
        baseline=optax.softmax_cross_entropy,
        make_args=_probability_args,
        shapes=((4096, 4096),),
        quick_shapes=QUICK_LOGIT_SHAPES,
    )
)


# The fused loss: a "shape" here is (examples N, width D, classes V).
def _linear_args(shape, dtype, rng):
    n, d, v = shape
    hidden = rng.standard_normal((n, d), dtype=np.float32)
    weight = rng.standard_normal((d, v), dtype=np.float32) / np.sqrt(d)
    labels = rng.integers(0, v, size=n).astype(np.int32)
    return hidden.astype(dtype), weight.astype(dtype), labels


def _fused(hidden, weight, labels):
    return jax_act.linear_softmax_cross_entropy(hidden, weight, labels)


def _materialised(hidden, weight, labels):
    logits = jnp.dot(hidden, weight, preferred_element_type=jnp.float32)
    return optax.softmax_cross_entropy_with_integer_labels(
        logits.astype(hidden.dtype), labels
    )


register(
    SpeedCase(
        name="linear_softmax_cross_entropy",
        ours=_fused,
        baseline=_materialised,
        make_args=_linear_args,
        shapes=((2048, 1024, 32768),),
        quick_shapes=((16, 8, 100),),
        # float32 only: bench/memory.py times the full size, and a
        # bfloat16 row cost 45 s of the report's ten minutes.
        dtypes=("float32",),
    )
)
