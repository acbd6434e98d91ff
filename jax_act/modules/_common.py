"""Pieces shared by the NNX and Linen layers that need no Flax.

Both layer files validate their arguments and shape PReLU's slope the same
way; keeping that here means the two cannot drift apart, and it lets the
checks be used (and tested) without Flax installed.
"""

import operator
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

# What to tell a user who imports a layer module without Flax installed.
INSTALL_HINT = (
    "pip install 'jax-act[demo]' (or just pip install flax) to use the "
    "Flax layers in jax_act.modules"
)

# Initial PReLU slope: 0.25, the value He et al. (2015), "Delving Deep into
# Rectifiers", arXiv:1502.01852, initialise every slope with.
DEFAULT_SLOPE_INIT = 0.25

# jax_act functions that `Activation` accepts by name. prelu is left out on
# purpose: its slope is a parameter, so it needs the PReLU layer.
ACTIVATION_NAMES = (
    "gelu",
    "leaky_relu",
    "log_sigmoid",
    "log_softmax",
    "relu",
    "sigmoid",
    "silu",
    "softmax",
    "swish",
)


def missing_flax(module: str, err: ImportError) -> ImportError:
    """The ImportError raised when `module` cannot import Flax."""
    return ImportError(
        f"{module} needs Flax, which is not installed: {err}. {INSTALL_HINT}."
    )


def resolve_activation(fn: Callable[..., Any] | str, where: str) -> Callable:
    """Returns the activation callable for a callable or a jax_act name.

    Raises:
        ValueError: if `fn` is a string that names no jax_act activation.
        TypeError: if `fn` is neither a string nor callable.
    """
    if isinstance(fn, str):
        if fn == "prelu":
            raise ValueError(
                f"{where}: prelu has a learnable slope; use the PReLU layer "
                "instead of Activation('prelu')."
            )
        if fn not in ACTIVATION_NAMES:
            raise ValueError(
                f"{where}: unknown activation {fn!r}; expected a callable or "
                f"one of {', '.join(ACTIVATION_NAMES)}."
            )
        import jax_act

        return getattr(jax_act, fn)
    if not callable(fn):
        raise TypeError(
            f"{where}: `fn` must be a callable or the name of a jax_act "
            f"activation; got {type(fn).__name__}."
        )
    return fn


def check_num_channels(num_channels: int | None, where: str) -> int | None:
    """Validates PReLU's `num_channels`: None (one shared slope) or > 0.

    Raises:
        TypeError: if it is neither None nor an integer.
        ValueError: if it is not positive.
    """
    if num_channels is None:
        return None
    try:
        num_channels = operator.index(num_channels)
    except TypeError as err:
        raise TypeError(
            f"{where}: `num_channels` must be a positive int or None (one "
            f"slope shared by every channel); got {num_channels!r}."
        ) from err
    if num_channels <= 0:
        raise ValueError(
            f"{where}: `num_channels` must be positive; got {num_channels}."
        )
    return num_channels


def slope_shape(num_channels: int | None) -> tuple[int, ...]:
    """The parameter shape: () for a shared slope, (C,) per channel."""
    return () if num_channels is None else (num_channels,)


def broadcast_slope(
    slope: jax.Array, x: jax.Array, axis: int, where: str
) -> jax.Array:
    """Reshapes a () or (C,) slope so that it broadcasts against `x`.

    A per-channel slope becomes shape (1, ..., C, ..., 1) with C at `axis`
    and as many dimensions as `x`: lining it up with the channel axis
    explicitly keeps it correct for any axis, not only the last, and works
    under strict rank promotion.

    Raises:
        ValueError: if `axis` is out of range for `x` or `x` has a different
            number of channels there than the slope.
    """
    if slope.ndim == 0:
        return slope
    if not -x.ndim <= axis < x.ndim:
        raise ValueError(
            f"{where}: channel axis {axis} is out of range for an input of "
            f"shape {x.shape}."
        )
    axis = axis % x.ndim
    if x.shape[axis] != slope.shape[0]:
        raise ValueError(
            f"{where}: the input has {x.shape[axis]} channels on axis {axis} "
            f"(shape {x.shape}) but the layer has {slope.shape[0]} slopes. "
            "Set `num_channels` to the channel count, or `axis` to the "
            "channel axis (channels-last, axis=-1, is the default)."
        )
    shape = [1] * x.ndim
    shape[axis] = slope.shape[0]
    return jnp.reshape(slope, shape)


def prelu_apply(
    x: jax.Array, slope: jax.Array, axis: int, dtype: Any, where: str
) -> jax.Array:
    """jax_act.prelu of `x` with the layer's slope, in the layer's dtype.

    With `dtype` None the computation takes the input's dtype (the slope is
    cast to it), as Flax's own layers do; otherwise both are cast to
    `dtype`.
    """
    import jax_act

    x = jnp.asarray(x)
    if dtype is not None:
        x = x.astype(dtype)
    elif not jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(jnp.result_type(float))
    slope = broadcast_slope(jnp.asarray(slope), x, axis, where)
    return jax_act.prelu(x, slope.astype(x.dtype))
