"""A class axis split across 8 devices: shard_map, axis_name and jit.

These tests need 8 devices. tests/test_sharding.py runs this folder in a
subprocess with XLA_FLAGS=--xla_force_host_platform_device_count=8 (set
before JAX starts); in the main test process, with one device, the module
is skipped.

Each sharded result is compared with the same function on one device,
values and gradients, to float32 accuracy.
"""

import functools
import pathlib
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

import jax_act

# bench/ is a top-level folder of the repository, not an installed package.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))
from bench.sharding import array_sizes, collectives

if jax.device_count() < 8:
    pytest.skip(
        "needs 8 devices; tests/test_sharding.py runs it with 8 CPU devices",
        allow_module_level=True,
    )

DEVICES = np.array(jax.devices()[:8])
MESH = Mesh(DEVICES, ("v",))
# Two mesh axes, the class axis split over both: axis_name=("a", "b").
MESH_2D = Mesh(DEVICES.reshape(2, 4), ("a", "b"))
TOL = dict(rtol=2e-5, atol=2e-6)

ROWS = 6
CLASSES = 64


def _close(got, want):
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), **TOL)


def _logits(rng, rows=ROWS, classes=CLASSES, scale=3.0):
    return jnp.asarray(rng.normal(size=(rows, classes)) * scale, jnp.float32)


def _split(fn, mesh, names, in_specs, out_specs):
    """jit(shard_map(fn)) with the class axis split over `names`."""
    mapped = jax.shard_map(
        functools.partial(fn, axis_name=names),
        mesh=mesh,
        in_specs=in_specs,
        out_specs=out_specs,
    )
    return jax.jit(mapped)


def _value_and_grads(fn, args, argnums, cotangent):
    """fn(*args) and the gradients of <cotangent, fn(*args)>."""

    def scalar(*a):
        return jnp.sum(fn(*a) * cotangent)

    grads = jax.jit(jax.grad(scalar, argnums=argnums))(*args)
    return fn(*args), grads


def _compare(one_device, sharded, args, argnums, out_shape, rng):
    cotangent = jnp.asarray(rng.normal(size=out_shape), jnp.float32)
    want, want_grads = _value_and_grads(one_device, args, argnums, cotangent)
    got, got_grads = _value_and_grads(sharded, args, argnums, cotangent)
    _close(got, want)
    for g, w in zip(got_grads, want_grads, strict=True):
        _close(g, w)


# --- The softmax family under shard_map. ---


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_softmax_family_with_mask_and_temperature(name, rng):
    fn = getattr(jax_act, name)
    x = _logits(rng)
    mask = jnp.asarray(rng.random((ROWS, CLASSES)) > 0.2)
    mask = mask.at[0].set(False)  # a row with no class left
    temperature = jnp.asarray(rng.uniform(0.5, 2.0, (ROWS, 1)), jnp.float32)

    def one_device(x, t):
        return fn(x, where=mask, temperature=t)

    def local(x, m, t, axis_name):
        return fn(x, where=m, temperature=t, axis_name=axis_name)

    split = _split(
        local, MESH, "v", (P(None, "v"), P(None, "v"), P()), P(None, "v")
    )

    def sharded(x, t):
        return split(x, mask, t)

    out_shape = (ROWS, CLASSES)
    _compare(one_device, sharded, (x, temperature), (0, 1), out_shape, rng)


def test_logsumexp_on_a_two_axis_mesh(rng):
    x = _logits(rng)
    split = _split(
        lambda x, axis_name: jax_act.logsumexp(x, axis=-1, axis_name=axis_name),
        MESH_2D,
        ("a", "b"),
        (P(None, ("a", "b")),),
        P(),
    )

    def one_device(x):
        return jax_act.logsumexp(x, axis=-1)

    _compare(one_device, split, (x,), (0,), (ROWS,), rng)


# --- Cross-entropies on materialised logits. ---

INTEGER_OPTIONS = [
    dict(),
    dict(label_smoothing=0.1, z_loss=1e-3),
    dict(logit_softcap=5.0, ignore_index=-100),
]


@pytest.mark.parametrize("options", INTEGER_OPTIONS, ids=str)
def test_integer_labels(options, rng):
    ce = jax_act.softmax_cross_entropy_with_integer_labels
    x = _logits(rng)
    labels = jnp.asarray(rng.integers(0, CLASSES, ROWS), jnp.int32)
    labels = labels.at[1].set(CLASSES - 1).at[2].set(0)
    if "ignore_index" in options:
        labels = labels.at[3].set(-100)
    mask = jnp.asarray(rng.random((ROWS, CLASSES)) > 0.1)
    mask = mask.at[jnp.arange(ROWS), labels].set(True)

    def one_device(x):
        return ce(x, labels, where=mask, **options)

    def local(x, y, m, axis_name):
        return ce(x, y, where=m, axis_name=axis_name, **options)

    split = _split(local, MESH, "v", (P(None, "v"), P(), P(None, "v")), P())
    _compare(
        one_device, lambda x: split(x, labels, mask), (x,), (0,), (ROWS,), rng
    )


def _plain_integer_split():
    """The integer-label loss, classes split 8 ways, labels replicated."""

    def local(x, y, axis_name):
        return jax_act.softmax_cross_entropy_with_integer_labels(
            x, y, axis_name=axis_name
        )

    return _split(local, MESH, "v", (P(None, "v"), P()), P())


def test_integer_labels_out_of_range_give_nan_on_every_device(rng):
    ce = jax_act.softmax_cross_entropy_with_integer_labels
    x = _logits(rng)
    labels = jnp.asarray([0, CLASSES, -1, 5, CLASSES - 1, 9], jnp.int32)
    split = _plain_integer_split()
    got = np.asarray(split(x, labels))
    assert np.isnan(got[[1, 2]]).all()
    _close(got[[0, 3, 4, 5]], ce(x, labels)[np.array([0, 3, 4, 5])])


def test_probability_labels_with_smoothing(rng):
    ce = jax_act.softmax_cross_entropy
    x = _logits(rng)
    # Ties across devices for the row maximum: the pivot must be unique.
    x = x.at[0].set(2.0)
    labels = jax.nn.softmax(_logits(rng), axis=-1)
    options = dict(label_smoothing=0.2, z_loss=1e-3)

    def one_device(x, y):
        return ce(x, y, **options)

    def local(x, y, axis_name):
        return ce(x, y, axis_name=axis_name, **options)

    split = _split(local, MESH, "v", (P(None, "v"), P(None, "v")), P())
    _compare(one_device, split, (x, labels), (0, 1), (ROWS,), rng)


def test_uneven_class_count_padded_with_masked_classes(rng):
    # shard_map splits evenly: V = 61 is padded to 64 with classes left
    # out by `where`, which then take no part (smoothing counts 61).
    ce = jax_act.softmax_cross_entropy_with_integer_labels
    classes = 61
    x = _logits(rng, classes=classes)
    labels = jnp.asarray(rng.integers(0, classes, ROWS), jnp.int32)
    options = dict(label_smoothing=0.1)
    padded = jnp.pad(x, ((0, 0), (0, CLASSES - classes)))
    # Two-dimensional: a one-dimensional mask reads as one flag per example.
    mask = (jnp.arange(CLASSES) < classes)[None, :]

    def local(x, y, m, axis_name):
        return ce(x, y, where=m, axis_name=axis_name, **options)

    split = _split(local, MESH, "v", (P(None, "v"), P(), P(None, "v")), P())
    cotangent = jnp.asarray(rng.normal(size=ROWS), jnp.float32)
    want, want_grad = _value_and_grads(
        lambda x: ce(x, labels, **options), (x,), 0, cotangent
    )
    got, got_grad = _value_and_grads(
        lambda p: split(p, labels, mask), (padded,), 0, cotangent
    )
    _close(got, want)
    _close(got_grad[:, :classes], want_grad)
    assert not np.asarray(got_grad[:, classes:]).any()


# --- Vocabulary-parallel fused loss. ---


def _fused_inputs(rng, classes=CLASSES, width=16):
    hidden = jnp.asarray(rng.normal(size=(ROWS, width)), jnp.float32)
    weight = jnp.asarray(rng.normal(size=(width, classes)) * 0.5, jnp.float32)
    bias = jnp.asarray(rng.normal(size=classes) * 0.1, jnp.float32)
    labels = jnp.asarray(rng.integers(0, classes, ROWS), jnp.int32)
    return hidden, weight, bias, labels


def _fused_split(mesh, names, **options):
    def local(h, w, b, y, axis_name):
        return jax_act.linear_softmax_cross_entropy(
            h, w, y, bias=b, axis_name=axis_name, chunk_size=3, **options
        )

    specs = (P(), P(None, names), P(names), P())
    return _split(local, mesh, names, specs, P())


@pytest.mark.parametrize(
    "options", [dict(), dict(label_smoothing=0.1, z_loss=1e-3)], ids=str
)
def test_fused_weight_split_over_classes(options, rng):
    hidden, weight, bias, labels = _fused_inputs(rng)
    split = _fused_split(MESH, "v", **options)

    def one_device(h, w, b):
        return jax_act.linear_softmax_cross_entropy(
            h, w, labels, bias=b, chunk_size=5, **options
        )

    def sharded(h, w, b):
        return split(h, w, b, labels)

    args = (hidden, weight, bias)
    _compare(one_device, sharded, args, (0, 1, 2), (ROWS,), rng)


def test_fused_mean_weight_split_over_classes(rng):
    # reduction="mean": blocks of rows, the gradients formed in the forward.
    hidden, weight, bias, labels = _fused_inputs(rng)
    options = dict(reduction="mean", label_smoothing=0.1)

    def local(h, w, b, y, axis_name):
        return jax_act.linear_softmax_cross_entropy(
            h, w, y, bias=b, axis_name=axis_name, chunk_size=4, **options
        )

    specs = (P(), P(None, "v"), P("v"), P())
    split = _split(local, MESH, "v", specs, P())

    def one_device(h, w, b):
        return jax_act.linear_softmax_cross_entropy(
            h, w, labels, bias=b, **options
        )

    args = (hidden, weight, bias)
    _compare(
        one_device,
        lambda h, w, b: split(h, w, b, labels),
        args,
        (0, 1, 2),
        (),
        rng,
    )


def test_fused_uneven_vocabulary_padded_on_a_two_axis_mesh(rng):
    classes = 59
    hidden, weight, bias, labels = _fused_inputs(rng, classes=classes)
    pad = CLASSES - classes
    weight_p = jnp.pad(weight, ((0, 0), (0, pad)))
    bias_p = jnp.pad(bias, (0, pad), constant_values=-jnp.inf)
    split = _fused_split(MESH_2D, ("a", "b"))
    cotangent = jnp.asarray(rng.normal(size=ROWS), jnp.float32)

    def one_device(h, w, b):
        return jax_act.linear_softmax_cross_entropy(h, w, labels, bias=b)

    want, (dh, dw, db) = _value_and_grads(
        one_device, (hidden, weight, bias), (0, 1, 2), cotangent
    )
    got, (gh, gw, gb) = _value_and_grads(
        lambda h, w, b: split(h, w, b, labels),
        (hidden, weight_p, bias_p),
        (0, 1, 2),
        cotangent,
    )
    _close(got, want)
    _close(gh, dh)
    _close(gw[:, :classes], dw)
    _close(gb[:classes], db)
    assert not np.asarray(gw[:, classes:]).any()


# --- What crosses devices: the compiled HLO. ---


def collective_sizes(compiled_text):
    """(op, element count) for each array every collective moves."""
    return [
        (op, count)
        for op, result_type in collectives(compiled_text)
        for count in array_sizes(result_type)
    ]


def test_fused_loss_and_gradients_reduce_only_per_row_statistics(rng):
    rows, width, classes = 32, 16, 1024
    hidden = jnp.asarray(rng.normal(size=(rows, width)), jnp.float32)
    weight = jnp.asarray(rng.normal(size=(width, classes)), jnp.float32)
    bias = jnp.zeros(classes, jnp.float32)
    labels = jnp.asarray(rng.integers(0, classes, rows), jnp.int32)
    split = _fused_split(MESH, "v")

    def loss(h, w, b):
        return jnp.mean(split(h, w, b, labels))

    step = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2)))
    text = step.lower(hidden, weight, bias).compile().as_text()
    found = collective_sizes(text)
    ops = {op for op, _ in found}
    assert ops == {"all-reduce"}, found
    # Per-row statistics, and dL/dh (rows x width, the hidden states'
    # size): never a slice of the logits (rows x classes / 8) or of the
    # weight (width x classes / 8).
    assert max(count for _, count in found) <= rows * width, found


def test_integer_loss_gradient_reduces_only_per_row_statistics(rng):
    rows, classes = 32, 4096
    x = _logits(rng, rows=rows, classes=classes)
    labels = jnp.asarray(rng.integers(0, classes, rows), jnp.int32)
    split = _plain_integer_split()
    step = jax.jit(jax.value_and_grad(lambda x: jnp.mean(split(x, labels))))
    found = collective_sizes(step.lower(x).compile().as_text())
    assert found and {op for op, _ in found} == {"all-reduce"}, found
    assert max(count for _, count in found) <= rows, found


# --- A wrong axis_name. ---


@pytest.mark.parametrize(
    "call",
    [
        lambda x: jax_act.softmax(x, axis_name="v"),
        lambda x: jax_act.softmax_cross_entropy(x, x, axis_name="v"),
        lambda x: jax_act.linear_softmax_cross_entropy(
            x, x, jnp.zeros(x.shape[0], jnp.int32), axis_name="v"
        ),
    ],
    ids=["softmax", "softmax_cross_entropy", "linear_softmax_cross_entropy"],
)
def test_unbound_axis_name_is_a_clear_error(call):
    x = jnp.ones((4, 4))
    with pytest.raises(ValueError, match="axis_name 'v' is not bound"):
        call(x)


def test_axis_name_of_another_mesh_is_a_clear_error():
    def local(x):
        return jax_act.log_softmax(x, axis_name="vocab")

    split = jax.shard_map(
        local, mesh=MESH, in_specs=P(None, "v"), out_specs=P(None, "v")
    )
    with pytest.raises(ValueError, match="axis_name 'vocab' is not bound"):
        split(jnp.ones((2, 16)))


# --- Plain jit over sharded inputs (NamedSharding). ---

ELEMENTWISE = [
    jax_act.relu,
    jax_act.silu,
    jax_act.sigmoid,
    jax_act.log_sigmoid,
    functools.partial(jax_act.gelu, approximate=False),
    functools.partial(jax_act.gelu, approximate="tanh"),
    functools.partial(jax_act.gelu, approximate="sigmoid"),
    functools.partial(jax_act.leaky_relu, negative_slope=0.1),
    functools.partial(jax_act.prelu, negative_slope=jnp.float32(0.2)),
    functools.partial(jax_act.swish, beta=1.5),
    jax_act.softmax,
    jax_act.log_softmax,
]


def test_jit_over_class_sharded_inputs_matches_one_device(rng):
    x = _logits(rng, rows=8, classes=CLASSES)
    cotangent = jnp.asarray(rng.normal(size=x.shape), jnp.float32)
    on_mesh = jax.device_put(x, NamedSharding(MESH, P(None, "v")))
    for fn in ELEMENTWISE:
        want = _value_and_grads(fn, (x,), (0,), cotangent)
        got = _value_and_grads(fn, (on_mesh,), (0,), cotangent)
        _close(got[0], want[0])
        _close(got[1][0], want[1][0])


def test_jit_over_sharded_loss_inputs_matches_one_device(rng):
    x = _logits(rng, rows=8)
    labels = jnp.asarray(rng.integers(0, CLASSES, 8), jnp.int32)
    probs = jax.nn.softmax(_logits(rng, rows=8), axis=-1)
    hidden, weight, bias, _ = _fused_inputs(rng)
    hidden = hidden[:4]
    by_class = NamedSharding(MESH, P(None, "v"))
    cases = [
        (
            lambda x: jax_act.softmax_cross_entropy_with_integer_labels(
                x, labels, label_smoothing=0.1
            ),
            (x,),
            (by_class,),
        ),
        (
            lambda x, y: jax_act.softmax_cross_entropy(x, y),
            (x, probs),
            (by_class, by_class),
        ),
        (
            lambda x: jax_act.logsumexp(x, axis=-1),
            (x,),
            (by_class,),
        ),
        (
            lambda h, w, b: jax_act.linear_softmax_cross_entropy(
                h, w, labels[:4], bias=b, chunk_size=16
            ),
            (hidden, weight, bias),
            (
                NamedSharding(MESH, P()),
                by_class,
                NamedSharding(MESH, P("v")),
            ),
        ),
    ]
    for fn, args, shardings in cases:
        placed = tuple(map(jax.device_put, args, shardings))
        argnums = tuple(range(len(args)))
        out_shape = fn(*args).shape
        cotangent = jnp.asarray(rng.normal(size=out_shape), jnp.float32)
        want = _value_and_grads(fn, args, argnums, cotangent)
        got = _value_and_grads(fn, placed, argnums, cotangent)
        _close(got[0], want[0])
        for g, w in zip(got[1], want[1], strict=True):
            _close(g, w)
