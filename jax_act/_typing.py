"""Type aliases shared by the public functions."""

from collections.abc import Hashable, Sequence

# An axis argument as `jax.nn` accepts it: one int, several, or all (None).
Axis = int | Sequence[int] | None

# A mesh axis name, or several, as `shard_map` binds them.
AxisName = Hashable | tuple[Hashable, ...] | None
