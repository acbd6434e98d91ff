"""Argument validation shared by every function family.

Every check here runs in Python at trace time, on shapes, dtypes and
concrete values, so that a bad call fails before XLA sees it. Nothing here
touches array values that may be traced.
"""

import operator

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jax_act._typing import Axis


def as_float_array(x: ArrayLike, name: str, arg: str = "x") -> jax.Array:
    """Converts `x` to a floating JAX array, promoting as `jax.nn` does.

    Integer and bool inputs become the default float dtype (float32, or
    float64 with x64 enabled), floats keep their dtype. Complex and
    non-numeric inputs raise.

    Args:
        x: the input.
        name: the public function's name, used in error messages.
        arg: the argument's name, used in error messages.

    Returns:
        A JAX array with a real floating dtype.

    Raises:
        TypeError: if `x` is complex or not numeric.
    """
    dtype = _dtype_of(x, name, arg)
    if jnp.issubdtype(dtype, jnp.complexfloating):
        raise TypeError(
            f"jax_act.{name}: `{arg}` has complex dtype {dtype}; only real "
            "floating, integer or bool inputs are supported. Take the real "
            "part or the magnitude first if that is what you mean."
        )
    if not (
        jnp.issubdtype(dtype, jnp.number) or jnp.issubdtype(dtype, jnp.bool_)
    ):
        raise TypeError(
            f"jax_act.{name}: `{arg}` has non-numeric dtype {dtype}; expected "
            "a real floating, integer or bool array."
        )
    if not jnp.issubdtype(dtype, jnp.floating):
        x = jnp.asarray(x, dtype=jnp.result_type(float))
    return jnp.asarray(x)


def _dtype_of(x: ArrayLike, name: str, arg: str) -> np.dtype:
    try:
        return jnp.result_type(x)
    except TypeError as err:
        raise TypeError(
            f"jax_act.{name}: `{arg}` of type {type(x).__name__} is not an "
            "array; expected a real floating, integer or bool array."
        ) from err


def canonical_axes(axis: Axis, ndim: int, name: str) -> tuple[int, ...]:
    """Turns an int, a sequence of ints or None into sorted positive axes.

    Raises:
        ValueError: if an axis is out of range or repeated.
        TypeError: if an axis is not an integer.
    """
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if np.ndim(axis) == 0 else tuple(axis)
    result = []
    for a in axes:
        try:
            a = operator.index(a)
        except TypeError as err:
            raise TypeError(
                f"jax_act.{name}: axis must be an int, a tuple of ints or "
                f"None; got {axis!r}."
            ) from err
        if not -ndim <= a < ndim:
            raise ValueError(
                f"jax_act.{name}: axis {a} is out of range for an input with "
                f"{ndim} dimension(s); valid axes are {-ndim} to {ndim - 1}."
            )
        result.append(a % ndim)
    if len(set(result)) != len(result):
        raise ValueError(f"jax_act.{name}: repeated axis in {axis!r}.")
    return tuple(sorted(result))


def broadcast_mask(
    where: ArrayLike | None, shape: tuple[int, ...], name: str
) -> jax.Array | None:
    """Checks that a boolean mask broadcasts to `shape` and broadcasts it.

    Raises:
        TypeError: if the mask is not boolean.
        ValueError: if it does not broadcast to `shape`.
    """
    if where is None:
        return None
    where = jnp.asarray(where)
    if where.dtype != jnp.bool_:
        raise TypeError(
            f"jax_act.{name}: `where` must be a boolean mask; got dtype "
            f"{where.dtype}. Use `where=mask.astype(bool)` to convert."
        )
    try:
        target = jnp.broadcast_shapes(where.shape, shape)
    except ValueError:
        target = None
    if target != tuple(shape):
        raise ValueError(
            f"jax_act.{name}: `where` of shape {where.shape} does not "
            f"broadcast to the input shape {tuple(shape)}."
        )
    return jnp.broadcast_to(where, shape)


def check_positive(value: ArrayLike, what: str, name: str) -> None:
    """Raises if a concrete `value` has an entry that is not > 0.

    Traced values cannot be inspected at trace time; they pass unchecked.

    Raises:
        ValueError: if a concrete entry is <= 0 or NaN.
    """
    try:
        concrete = np.asarray(value)
    except (jax.errors.TracerArrayConversionError, TypeError):
        return
    if concrete.dtype == object:
        return
    if not np.all(concrete > 0):
        raise ValueError(
            f"jax_act.{name}: `{what}` must be positive; got {value!r}."
        )


def check_axis_name(axis_name, name: str) -> None:
    """Raises unless every mesh axis in `axis_name` is bound here.

    A mesh axis is bound inside `shard_map` (or `pmap`/`vmap` with an
    `axis_name`). Outside one, the collectives would fail with JAX's own
    NameError; this says which argument was wrong and how to fix it.

    Raises:
        ValueError: if an axis name is not bound by an enclosing mapping.
    """
    if axis_name is None:
        return
    names = axis_name if isinstance(axis_name, tuple) else (axis_name,)
    for axis in names:
        try:
            jax.lax.axis_size(axis)
        except NameError as err:
            raise ValueError(
                f"jax_act.{name}: axis_name {axis!r} is not bound here. Call "
                "it inside `jax.shard_map` (or a mapping) over a mesh with "
                "that axis, with the class axis split across it; or pass "
                "axis_name=None for an unsharded class axis."
            ) from err
