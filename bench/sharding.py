"""What a class axis split across devices costs in communication.

    python -m bench.sharding [--devices 8]

Runs on simulated CPU devices: it sets XLA_FLAGS before JAX starts its
backend, so run it as a process of its own. For the fused loss, the
integer-label loss and log_softmax, with the class axis split over every
device, it prints how far values and gradients are from the one-device
result and every collective in the compiled HLO of loss plus gradients,
with its type. tests/multidevice checks the same properties on each run.
"""

import argparse
import math
import os
import re

# One HLO instruction: "%name = TYPE op(", TYPE a shape such as
# f32[256]{0} or, when XLA merges several collectives, a tuple of them.
_COLLECTIVE = re.compile(
    r"= (\([^)]*\)|\S+) (all-reduce|all-gather|all-to-all|"
    r"collective-permute|reduce-scatter)(?:-start)?\("
)
_SHAPE = re.compile(r"\w+\[([\d,]*)\]")


def collectives(hlo_text):
    """(op, result type) of each collective instruction of an HLO module."""
    return [(op, kind) for kind, op in _COLLECTIVE.findall(hlo_text)]


def array_sizes(result_type):
    """The element count of each array in an HLO result type."""
    return [
        math.prod(int(d) for d in dims.split(",") if d)
        for dims in _SHAPE.findall(result_type)
    ]


def _rel(a, b):
    import numpy as np

    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30))


def _report(name, one, split, args):
    """Prints agreement and collectives of mean(split) against mean(one)."""
    import jax
    import jax.numpy as jnp

    argnums = tuple(range(len(args)))
    step = jax.jit(
        jax.value_and_grad(lambda *a: jnp.mean(split(*a)), argnums=argnums)
    )
    want = jax.value_and_grad(lambda *a: jnp.mean(one(*a)), argnums=argnums)
    value, grads = step(*args)
    want_value, want_grads = want(*args)
    pairs = zip(grads, want_grads, strict=True)
    diffs = ", ".join(f"{_rel(g, w):.1e}" for g, w in pairs)
    print(
        f"{name}: loss rel. diff {_rel(value, want_value):.1e}, "
        f"gradients {diffs}"
    )
    for op, kind in collectives(step.lower(*args).compile().as_text()):
        print(f"    {op} {kind}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=8)
    parser.add_argument("--rows", type=int, default=256)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--classes", type=int, default=8192)
    args = parser.parse_args(argv)
    # Read when JAX starts its CPU backend (its first use, not its import).
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "")
        + f" --xla_force_host_platform_device_count={args.devices}"
    )

    import jax
    import numpy as np
    from jax.sharding import Mesh
    from jax.sharding import PartitionSpec as P

    import jax_act

    if len(jax.devices()) != args.devices:
        parser.error(
            f"JAX started with {len(jax.devices())} devices, not "
            f"{args.devices}: run this as a process of its own"
        )
    mesh = Mesh(np.array(jax.devices()), ("v",))
    n, d, v = args.rows, args.width, args.classes
    print(
        f"{args.devices} devices; N = {n}, D = {d}, V = {v}, class axis "
        "split over all of them; float32"
    )
    keys = jax.random.split(jax.random.key(0), 4)
    hidden = jax.random.normal(keys[0], (n, d))
    weight = jax.random.normal(keys[1], (d, v)) / np.sqrt(d)
    labels = jax.random.randint(keys[2], (n,), 0, v)
    logits = 3 * jax.random.normal(keys[3], (n, v))

    def shard(fn, in_specs, out_specs):
        return jax.shard_map(
            fn, mesh=mesh, in_specs=in_specs, out_specs=out_specs
        )

    fused = jax_act.linear_softmax_cross_entropy
    fused_split = shard(
        lambda h, w, y: fused(h, w, y, axis_name="v"),
        (P(), P(None, "v"), P()),
        P(),
    )
    _report(
        "linear_softmax_cross_entropy",
        lambda h, w: fused(h, w, labels),
        lambda h, w: fused_split(h, w, labels),
        (hidden, weight),
    )
    ce = jax_act.softmax_cross_entropy_with_integer_labels
    ce_split = shard(
        lambda x, y: ce(x, y, axis_name="v"), (P(None, "v"), P()), P()
    )
    _report(
        "softmax_cross_entropy_with_integer_labels",
        lambda x: ce(x, labels),
        lambda x: ce_split(x, labels),
        (logits,),
    )
    log_softmax_split = shard(
        lambda x: jax_act.log_softmax(x, axis_name="v"),
        P(None, "v"),
        P(None, "v"),
    )
    # A loss that weighs every output: <cotangent, log_softmax(x)>.
    cotangent = jax.random.normal(keys[3], (n, v))
    _report(
        "log_softmax (loss: mean of log_softmax times a random array)",
        lambda x: jax_act.log_softmax(x) * cotangent,
        lambda x: log_softmax_split(x) * cotangent,
        (logits,),
    )


if __name__ == "__main__":
    main()
