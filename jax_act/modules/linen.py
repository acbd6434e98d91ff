r"""Flax Linen layers: PReLU with a learnable slope, and Activation.

The Linen twins of `jax_act.modules.nnx`, with the same arguments and the
same numbers.

Examples:
    >>> import jax
    >>> import jax.numpy as jnp
    >>> import flax.linen as nn
    >>> from jax_act.modules import linen as act_linen
    >>> model = nn.Sequential([
    ...     nn.Dense(8),
    ...     act_linen.PReLU(8),
    ...     nn.Dense(3),
    ...     act_linen.Activation("gelu", kwargs={"approximate": "sigmoid"}),
    ... ])
    >>> variables = model.init(jax.random.key(0), jnp.ones((2, 4)))
    >>> model.apply(variables, jnp.ones((2, 4))).shape
    (2, 3)
"""

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from jax_act.modules import _common

try:
    import flax.linen as nn
except ImportError as err:  # pragma: no cover - exercised in a subprocess
    raise _common.missing_flax("jax_act.modules.linen", err) from err

__all__ = ["Activation", "PReLU"]


class PReLU(nn.Module):
    r"""Parametric ReLU with a learnable negative slope, shared or per channel.

    The slope of the negative half is a parameter named ``negative_slope``:
    one value shared by every unit (``num_channels=None``), or one per
    channel along `axis` (channels-last, ``axis=-1``, by default, so that it
    follows an `nn.Dense` or a channels-last `nn.Conv`).

    .. math::

        \mathrm{prelu}(x)_{\ldots c \ldots} = \begin{cases}
            x & x \ge 0 \\ a_c \, x & x < 0 \end{cases}

    where :math:`a_c` is the slope of channel :math:`c` (or the one shared
    slope :math:`a`), initialised to 0.25 as in He et al. (2015).

    Numerics:
        The forward pass and both derivatives are `jax_act.prelu`'s. With
        ``dtype=None`` the layer computes in the input's dtype (the slope is
        cast to it); otherwise input and slope are cast to `dtype`. Integer
        inputs become float32.

    Attributes:
        num_channels: number of slopes, equal to the size of the input's
            `axis`; None (the default) learns one slope for all units.
        axis: the channel axis of the input (keyword-only).
        negative_slope_init: initial value of every slope (keyword-only).
        dtype: computation dtype; None means the input's (keyword-only).
        param_dtype: dtype of the slope parameter (keyword-only).

    Raises:
        ValueError: if the input does not have `num_channels` entries on
            `axis`, or `num_channels` is not positive.

    Examples:
        >>> import jax
        >>> import jax.numpy as jnp
        >>> from jax_act.modules.linen import PReLU
        >>> layer = PReLU(3)
        >>> x = jnp.array([[-2.0, 0.5, -4.0]])
        >>> variables = layer.init(jax.random.key(0), x)
        >>> variables["params"]["negative_slope"].shape
        (3,)
        >>> print(layer.apply(variables, x))
        [[-0.5  0.5 -1. ]]

    References:
        K. He, X. Zhang, S. Ren and J. Sun, "Delving Deep into Rectifiers:
        Surpassing Human-Level Performance on ImageNet Classification",
        ICCV 2015, arXiv:1502.01852.

    See Also:
        `flax.linen.PReLU` learns one scalar slope only (initial 0.01); the
        NNX twin of this layer is `jax_act.modules.nnx.PReLU`.
    """

    num_channels: int | None = None
    _: dataclasses.KW_ONLY
    axis: int = -1
    negative_slope_init: float = _common.DEFAULT_SLOPE_INIT
    dtype: Any = None
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: ArrayLike) -> jax.Array:
        """Applies PReLU with the learned slope(s) to `x` (any shape)."""
        num_channels = _common.check_num_channels(self.num_channels, "PReLU")
        slope = self.param(
            "negative_slope",
            nn.initializers.constant(self.negative_slope_init),
            _common.slope_shape(num_channels),
            self.param_dtype,
        )
        return _common.prelu_apply(x, slope, self.axis, self.dtype, "PReLU")


class Activation(nn.Module):
    """Wraps a parameter-free activation function as a Linen module.

    Linen already accepts plain functions in `nn.Sequential`; this wrapper
    is for a function with fixed keyword arguments, or a model attribute
    that must be a module, and accepts jax_act names.

    Attributes:
        fn: a callable such as `jax_act.gelu`, or the name of a jax_act
            activation ("relu", "leaky_relu", "gelu", "silu", "swish",
            "sigmoid", "log_sigmoid", "softmax", "log_softmax").
        kwargs: fixed keyword arguments for `fn`, for example
            ``{"approximate": "tanh"}`` for gelu.

    Raises:
        ValueError: if `fn` is a string naming no jax_act activation (or
            "prelu", whose slope needs the `PReLU` layer).
        TypeError: if `fn` is not callable.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jax_act.modules.linen import Activation
        >>> act = Activation("leaky_relu", kwargs={"negative_slope": 0.5})
        >>> print(act.apply({}, jnp.array([-2.0, 3.0])))
        [-1.  3.]
    """

    fn: Callable[..., jax.Array] | str
    kwargs: Mapping[str, Any] | None = None

    def __call__(self, x: ArrayLike) -> jax.Array:
        """Applies the wrapped function to `x`."""
        fn = _common.resolve_activation(self.fn, "Activation")
        return fn(x, **(self.kwargs or {}))
