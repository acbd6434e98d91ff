"""jax_act: accurate, fast activation functions for JAX.

Every function is a drop-in for its `jax.nn` (or Optax) namesake, with a
hand-written derivative rule and measured accuracy.
"""

from jax_act._diagnostics import DeadUnits, dead_units
from jax_act._gelu import gelu
from jax_act._rectifiers import leaky_relu, prelu, relu, silu, swish
from jax_act._sigmoid import log_sigmoid, sigmoid
from jax_act._softmax import log_softmax, logsumexp, softmax

__version__ = "0.1.0"

__all__ = [
    "DeadUnits",
    "dead_units",
    "gelu",
    "leaky_relu",
    "log_sigmoid",
    "log_softmax",
    "logsumexp",
    "prelu",
    "relu",
    "sigmoid",
    "silu",
    "softmax",
    "swish",
]
