"""jax_act: accurate, fast activation functions for JAX.

Every function is a drop-in for its `jax.nn` (or Optax) namesake, with a
hand-written derivative rule and measured accuracy.
"""

from jax_act._diagnostics import DeadUnits, dead_units
from jax_act._fused import linear_softmax_cross_entropy
from jax_act._gelu import gelu
from jax_act._losses import (
    softmax_cross_entropy,
    softmax_cross_entropy_with_integer_labels,
)
from jax_act._rectifiers import leaky_relu, prelu, relu, silu, swish
from jax_act._sigmoid import log_sigmoid, sigmoid
from jax_act._softmax import log_softmax, logsumexp, softmax

__version__ = "0.1.0"

__all__ = [
    "DeadUnits",
    "dead_units",
    "gelu",
    "leaky_relu",
    "linear_softmax_cross_entropy",
    "log_sigmoid",
    "log_softmax",
    "logsumexp",
    "prelu",
    "relu",
    "sigmoid",
    "silu",
    "softmax",
    "softmax_cross_entropy",
    "softmax_cross_entropy_with_integer_labels",
    "swish",
]
