r"""Flax NNX layers: PReLU with a learnable slope, and Activation.

`PReLU` learns the slope of the negative part, one shared or one per
channel; `Activation` lets any jax_act function sit where NNX expects a
module (in a list of layers, or as a configurable attribute).

Examples:
    >>> import jax.numpy as jnp
    >>> from flax import nnx
    >>> from jax_act.modules import nnx as act_nnx
    >>> model = nnx.Sequential(
    ...     nnx.Linear(4, 8, rngs=nnx.Rngs(0)),
    ...     act_nnx.PReLU(8),
    ...     nnx.Linear(8, 3, rngs=nnx.Rngs(1)),
    ...     act_nnx.Activation("gelu", approximate="sigmoid"),
    ... )
    >>> model(jnp.ones((2, 4))).shape
    (2, 3)
"""

import operator
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from jax_act.modules import _common

try:
    from flax import nnx
except ImportError as err:  # pragma: no cover - exercised in a subprocess
    raise _common.missing_flax("jax_act.modules.nnx", err) from err

__all__ = ["Activation", "PReLU"]


class PReLU(nnx.Module):
    r"""Parametric ReLU with a learnable negative slope, shared or per channel.

    The slope of the negative half is a parameter trained with the rest of
    the model: one value shared by every unit (``num_channels=None``), or
    one per channel along `axis` (channels-last, ``axis=-1``, by default,
    so that it follows a `nnx.Linear` or a channels-last `nnx.Conv`).

    .. math::

        \mathrm{prelu}(x)_{\ldots c \ldots} = \begin{cases}
            x & x \ge 0 \\ a_c \, x & x < 0 \end{cases}

    where :math:`a_c` is the slope of channel :math:`c` (or the one shared
    slope :math:`a`), initialised to 0.25 as in He et al. (2015).

    Numerics:
        The forward pass and both derivatives (with respect to the input and
        to the slope) are `jax_act.prelu`'s, including its convention at
        x = 0. With ``dtype=None`` the layer computes in the input's dtype
        (the slope is cast to it, as Flax's own layers do); otherwise input
        and slope are cast to `dtype`. Integer inputs become float32.

    Args:
        num_channels: number of slopes, equal to the size of the input's
            `axis`; None (the default) learns one slope for all units.
        axis: the channel axis of the input (ignored for a shared slope).
        negative_slope_init: initial value of every slope.
        dtype: computation dtype; None means the input's.
        param_dtype: dtype of the slope parameter.

    Attributes:
        negative_slope: the slope parameter, shape () or (num_channels,).

    Raises:
        ValueError: at call time, if the input does not have `num_channels`
            entries on `axis`; at construction, if `num_channels` is not
            positive.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jax_act.modules.nnx import PReLU
        >>> layer = PReLU(3)
        >>> layer.negative_slope.shape
        (3,)
        >>> print(layer(jnp.array([[-2.0, 0.5, -4.0]])))
        [[-0.5  0.5 -1. ]]

        Per channel on axis 1 of an NCHW image batch:

        >>> layer = PReLU(16, axis=1)
        >>> layer(jnp.ones((2, 16, 5, 5))).shape
        (2, 16, 5, 5)

    References:
        K. He, X. Zhang, S. Ren and J. Sun, "Delving Deep into Rectifiers:
        Surpassing Human-Level Performance on ImageNet Classification",
        ICCV 2015, arXiv:1502.01852.

    See Also:
        `flax.nnx.PReLU` learns one scalar slope only (initial 0.01);
        PyTorch's `nn.PReLU` has per-channel slopes on axis 1 only. The Linen
        twin of this layer is `jax_act.modules.linen.PReLU`.
    """

    def __init__(
        self,
        num_channels: int | None = None,
        *,
        axis: int = -1,
        negative_slope_init: float = _common.DEFAULT_SLOPE_INIT,
        dtype: Any = None,
        param_dtype: Any = jnp.float32,
    ):
        self.num_channels = _common.check_num_channels(num_channels, "PReLU")
        self.axis = operator.index(axis)
        self.dtype = dtype
        self.param_dtype = param_dtype
        shape = _common.slope_shape(self.num_channels)
        self.negative_slope = nnx.Param(
            jnp.full(shape, negative_slope_init, dtype=param_dtype)
        )

    def __call__(self, x: ArrayLike) -> jax.Array:
        """Applies PReLU with the learned slope(s) to `x` (any shape)."""
        return _common.prelu_apply(
            x, self.negative_slope[...], self.axis, self.dtype, "PReLU"
        )


class Activation(nnx.Module):
    """Wraps a parameter-free activation function as an NNX module.

    Use it where NNX expects a module rather than a function: an entry of
    `nnx.Sequential`, or an attribute a model is configured with. Keyword
    arguments are passed to the function on every call.

    Args:
        fn: a callable such as `jax_act.gelu`, or the name of a jax_act
            activation ("relu", "leaky_relu", "gelu", "silu", "swish",
            "sigmoid", "log_sigmoid", "softmax", "log_softmax").
        **kwargs: fixed keyword arguments for `fn`, for example
            ``approximate="tanh"`` for gelu or ``negative_slope=0.1`` for
            leaky_relu.

    Raises:
        ValueError: if `fn` is a string naming no jax_act activation (or
            "prelu", whose slope needs the `PReLU` layer).
        TypeError: if `fn` is not callable.

    Examples:
        >>> import jax.numpy as jnp
        >>> import jax_act
        >>> from jax_act.modules.nnx import Activation
        >>> act = Activation(jax_act.leaky_relu, negative_slope=0.5)
        >>> print(act(jnp.array([-2.0, 3.0])))
        [-1.  3.]
    """

    def __init__(self, fn: Callable[..., jax.Array] | str, /, **kwargs: Any):
        self.fn = _common.resolve_activation(fn, "Activation")
        self.kwargs = kwargs

    def __call__(self, x: ArrayLike) -> jax.Array:
        """Applies the wrapped function to `x`."""
        return self.fn(x, **self.kwargs)
