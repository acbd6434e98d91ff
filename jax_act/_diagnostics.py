r"""Diagnostics for activations: which units have stopped learning.

A ReLU unit whose pre-activation is negative for every example of a batch
has derivative 0 everywhere and receives no gradient: it is "dead", and
stays so unless something else moves its inputs. Leaky ReLU and PReLU keep
a small slope on the negative side against this.
"""

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from jax_act import _checks
from jax_act._typing import Axis


class DeadUnits(NamedTuple):
    """Result of `dead_units`.

    Attributes:
        mask: bool array, one entry per unit (the input's shape without the
            batch axes); True where the activation's derivative is exactly
            0 for every example.
        fraction: float32 scalar, the mean of `mask` (0 when there are no
            units).
    """

    mask: jax.Array
    fraction: jax.Array


def dead_units(
    activation: Callable[[jax.Array], jax.Array],
    x: ArrayLike,
    *,
    batch_axis: Axis = 0,
) -> DeadUnits:
    r"""Finds the units whose activation has zero derivative on a whole batch.

    The derivative is the activation's own, taken by forward-mode
    differentiation (a JVP with a tangent of ones), so any element-wise
    function works, jax_act's or not, and no table of names is involved:
    relu's rule (derivative 0 for x <= 0) decides for relu, leaky_relu's
    (never 0) for leaky_relu.

    .. math::

        \mathrm{dead}_j = \bigwedge_{b} \bigl[ f'(x_{b j}) = 0 \bigr],
        \qquad \mathrm{fraction} = \frac{1}{J} \sum_j \mathrm{dead}_j

    with :math:`b` running over the batch axes and :math:`j` over the
    remaining (unit) positions.

    Numerics:
        Derivatives are evaluated in `x`'s dtype, as a network trained in
        that dtype sees them: a bfloat16 or float16 derivative that
        underflows to 0 counts as 0 (gelu's in float16 from about x = -6,
        for instance). A NaN derivative is not 0, so a NaN unit is not
        reported dead. Traceable: works under `jax.jit` (with `activation`
        and `batch_axis` static) and `jax.vmap`.

    Args:
        activation: an element-wise function of one array, e.g.
            `jax_act.relu` or `functools.partial(jax_act.prelu,
            negative_slope=a)`.
        x: pre-activations [batch, ...units]; integer and bool become
            floats.
        batch_axis: the axis, or axes, holding the examples. Static.

    Returns:
        DeadUnits(mask, fraction): `mask` of `x`'s shape with the batch
        axes removed, `fraction` a float32 scalar.

    Raises:
        TypeError: if `activation` is not callable, or for complex or
            non-numeric `x`.
        ValueError: if `x` is a scalar, a batch axis is out of range or
            empty, or `activation` changes the shape of its input.

    Examples:
        >>> import jax.numpy as jnp
        >>> import jax_act
        >>> x = jnp.array([[-1.0, 2.0, -3.0], [-0.5, -1.0, 0.0]])
        >>> dead = jax_act.dead_units(jax_act.relu, x)
        >>> dead.mask
        Array([ True, False,  True], dtype=bool)
        >>> dead.fraction
        Array(0.6666667, dtype=float32)
        >>> jax_act.dead_units(jax_act.leaky_relu, x).fraction
        Array(0., dtype=float32)

    References:
        L. Lu, Y. Shin, Y. Su and G. E. Karniadakis, "Dying ReLU and
        Initialization: Theory and Numerical Examples", arXiv:1903.06733,
        2019.

    See Also:
        `relu`, `leaky_relu`, `prelu`.
    """
    if not callable(activation):
        raise TypeError(
            "jax_act.dead_units: `activation` must be a callable taking one "
            f"array, e.g. jax_act.relu; got {activation!r}."
        )
    x = _checks.as_float_array(x, "dead_units")
    if x.ndim == 0:
        raise ValueError(
            "jax_act.dead_units: `x` must have a batch axis; got a scalar."
        )
    axes = _checks.canonical_axes(batch_axis, x.ndim, "dead_units")
    empty = [a for a in axes if x.shape[a] == 0]
    if empty:
        raise ValueError(
            f"jax_act.dead_units: batch axis {empty[0]} of `x` (shape "
            f"{x.shape}) is empty; with no examples no unit can be judged."
        )

    # For an element-wise f, the JVP with a tangent of ones is f'(x).
    out, slope = jax.jvp(activation, (x,), (jnp.ones_like(x),))
    if jnp.shape(out) != x.shape:
        raise ValueError(
            "jax_act.dead_units: `activation` must be element-wise; it "
            f"mapped shape {x.shape} to {jnp.shape(out)}."
        )
    mask = jnp.all(slope == 0, axis=axes)
    if mask.size == 0:
        return DeadUnits(mask, jnp.zeros((), jnp.float32))
    return DeadUnits(mask, jnp.mean(mask, dtype=jnp.float32))
