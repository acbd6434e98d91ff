"""Training and evaluation of the demo's NNX classifier, one activation.

The model is a multilayer perceptron written with Flax NNX and jax_act's
layers; training is a jitted Optax step scanned over each epoch's batches.
Every activation starts from the same weights and sees the batches in the
same order, so that the activation is the only thing that differs.
"""

import functools
import itertools
import time
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

import jax_act
from jax_act.demo._config import DemoConfig
from jax_act.demo._data import Splits
from jax_act.modules import nnx as act_nnx

# The activations the demo compares: name -> (layer factory, description).
# A factory takes the layer width and returns an NNX module.
ACTIVATIONS: dict[str, tuple[Callable[[int], nnx.Module], str]] = {
    "relu": (lambda width: act_nnx.Activation("relu"), "max(x, 0)"),
    "leaky_relu": (
        lambda width: act_nnx.Activation("leaky_relu", negative_slope=0.01),
        "negative slope 0.01",
    ),
    "prelu": (
        lambda width: act_nnx.PReLU(width),
        "learned slope per unit, initial 0.25",
    ),
    "gelu_exact": (
        lambda width: act_nnx.Activation("gelu", approximate="none"),
        "x * Phi(x)",
    ),
    "gelu_tanh": (
        lambda width: act_nnx.Activation("gelu", approximate="tanh"),
        "tanh approximation",
    ),
    "gelu_sigmoid": (
        lambda width: act_nnx.Activation("gelu", approximate="sigmoid"),
        "x * sigmoid(1.702 x)",
    ),
    "silu": (lambda width: act_nnx.Activation("silu"), "x * sigmoid(x)"),
}

# Equal-width confidence bins of the calibration error and the reliability
# diagram (15 is the usual choice since Guo et al., 2017).
ECE_BINS = 15


class MLP(nnx.Module):
    """Linear -> activation, repeated, then a linear layer to class logits.

    The output layer is a softmax over the logits `__call__` returns:
    training applies it through jax_act's softmax cross-entropy, evaluation
    through jax_act.softmax and log_softmax with a temperature.
    """

    def __init__(
        self,
        features: int,
        widths: Sequence[int],
        classes: int,
        activation: str,
        *,
        rngs: nnx.Rngs,
    ):
        make_activation = ACTIVATIONS[activation][0]
        sizes = [features, *widths]
        self.linears = nnx.List(
            [nnx.Linear(a, b, rngs=rngs) for a, b in itertools.pairwise(sizes)]
        )
        self.activations = nnx.List([make_activation(w) for w in widths])
        self.head = nnx.Linear(sizes[-1], classes, rngs=rngs)

    def forward(self, x: jax.Array) -> tuple[jax.Array, list[jax.Array]]:
        """Class logits [batch, classes] and every hidden pre-activation."""
        preactivations = []
        for linear, act in zip(self.linears, self.activations, strict=True):
            z = linear(x)
            preactivations.append(z)
            x = act(z)
        return self.head(x), preactivations

    def __call__(self, x: jax.Array) -> jax.Array:
        """Class logits [batch, classes]."""
        return self.forward(x)[0]


def mean_nll(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Mean negative log-likelihood of integer labels (cross-entropy)."""
    losses = jax_act.softmax_cross_entropy_with_integer_labels(logits, labels)
    return jnp.mean(losses)


def _decay_mask(params):
    # Weight decay on the weight matrices only: decaying biases or PReLU's
    # slope toward 0 would pull PReLU back toward a plain ReLU.
    def is_kernel(path, _):
        return any(getattr(key, "key", None) == "kernel" for key in path)

    return jax.tree_util.tree_map_with_path(is_kernel, params)


def make_optimizer(weight_decay: float) -> optax.GradientTransformation:
    """AdamW at unit learning rate; the train step scales its updates.

    AdamW's update is -lr (adam direction + weight_decay * param), linear in
    lr, so scaling a unit-rate update by each step's rate is exactly AdamW
    with that schedule. Feeding the rate in per step, instead of baking a
    schedule into the optimizer, lets one compiled program train every
    learning-rate setting of an activation.
    """
    return optax.adamw(1.0, weight_decay=weight_decay, mask=_decay_mask)


def learning_rates(
    peak: float, schedule: str, epochs: int, steps: int
) -> np.ndarray:
    """The learning rate of every step, [epochs, steps].

    "cosine": linear warm-up from 0 over the first 5 per cent of the steps,
    then cosine decay to 0 (optax.warmup_cosine_decay_schedule);
    "constant": `peak` throughout.
    """
    total = epochs * steps
    if schedule == "cosine":
        fn = optax.warmup_cosine_decay_schedule(
            init_value=0.0,
            peak_value=peak,
            warmup_steps=max(1, total // 20),
            decay_steps=max(2, total),
        )
        # Shift by one so the first step already moves (rate 0 at count 0).
        rates = np.asarray(jax.vmap(fn)(jnp.arange(1, total + 1)))
    else:
        rates = np.full(total, peak)
    return rates.astype(np.float32).reshape(epochs, steps)


def epoch_batches(n_train: int, config: DemoConfig) -> tuple[np.ndarray, int]:
    """Example indices [epochs, steps, batch] shared by every activation.

    The order comes from its own fixed-seed generator, so each activation
    sees the same batches in the same order. The last partial batch of an
    epoch is dropped to keep one compiled shape.
    """
    batch = min(config.batch_size, n_train)
    steps = n_train // batch
    rng = np.random.default_rng([config.seed, 1])
    order = [
        rng.permutation(n_train)[: steps * batch] for _ in range(config.epochs)
    ]
    return np.stack(order).reshape(config.epochs, steps, batch), batch


def expected_calibration_error(
    probs: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS
) -> tuple[float, dict]:
    """ECE of the top-class confidence, and the reliability diagram data.

    ECE = sum over bins b of (n_b / n) |accuracy_b - confidence_b|, with
    equal-width bins on the confidence (the largest probability).
    """
    probs = np.asarray(probs, dtype=np.float64)
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == labels
    edges = np.linspace(0.0, 1.0, bins + 1)
    # Bin b holds confidences in (edges[b], edges[b + 1]]; the first bin
    # also holds 0.
    index = np.clip(
        np.searchsorted(edges, confidence, side="left") - 1, 0, bins - 1
    )
    count = np.bincount(index, minlength=bins)
    conf_sum = np.bincount(index, weights=confidence, minlength=bins)
    correct_sum = np.bincount(index, weights=correct, minlength=bins)
    safe = np.maximum(count, 1)
    bin_conf = conf_sum / safe
    bin_acc = correct_sum / safe
    ece = float(np.sum(count * np.abs(bin_acc - bin_conf)) / len(labels))
    diagram = {
        "bin_edges": edges.tolist(),
        "count": count.tolist(),
        "confidence": [
            float(c) if n else None
            for c, n in zip(bin_conf, count, strict=True)
        ],
        "accuracy": [
            float(a) if n else None for a, n in zip(bin_acc, count, strict=True)
        ],
    }
    return ece, diagram


def _temperature_nll(log_t, logits, labels):
    """Mean NLL of softmax(logits / T), T = exp(log_t), via jax_act."""
    log_probs = jax_act.log_softmax(logits, temperature=jnp.exp(log_t))
    return -jnp.mean(jnp.take_along_axis(log_probs, labels[:, None], axis=1))


@functools.partial(jax.jit, static_argnames="steps")
def _fit_log_temperature(logits, labels, *, steps):
    # Adam on log T: T = exp(log T) stays positive without constraints, and
    # the loss is better scaled in log T than in T.
    tx = optax.adam(0.05)
    grad_fn = jax.grad(_temperature_nll)

    def step(carry, _):
        log_t, state = carry
        updates, state = tx.update(grad_fn(log_t, logits, labels), state)
        return (optax.apply_updates(log_t, updates), state), None

    log_t = jnp.zeros((), logits.dtype)
    (log_t, _), _ = jax.lax.scan(
        step, (log_t, tx.init(log_t)), None, length=steps
    )
    return log_t, grad_fn(log_t, logits, labels)


def fit_temperature(
    logits: jax.Array, labels: jax.Array, steps: int
) -> tuple[float, float]:
    """Fits the softmax temperature on held-out logits by gradient descent.

    Minimises the mean negative log-likelihood of jax_act.log_softmax(
    logits, temperature=T) over log T with Adam, starting from T = 1; the
    gradient with respect to T comes from jax_act's own derivative rule for
    the temperature. Compiled once for all activations (same shapes).

    Returns:
        T, and the final gradient with respect to log T (near 0 once the
        fit has converged).
    """
    log_t, grad = _fit_log_temperature(logits, labels, steps=steps)
    return float(jnp.exp(log_t)), float(grad)


@jax.jit
def _scaled_predictions(logits, labels, temperature):
    """Probabilities and mean NLL at a temperature, via jax_act."""
    probs = jax_act.softmax(logits, temperature=temperature)
    log_probs = jax_act.log_softmax(logits, temperature=temperature)
    nll = -jnp.mean(jnp.take_along_axis(log_probs, labels[:, None], axis=1))
    return probs, nll


def _dead_fractions(model: MLP, preactivations: list[jax.Array]):
    """Dead fraction of each hidden layer, then of all hidden units."""
    fractions, dead, total = [], 0, 0
    for act, z in zip(model.activations, preactivations, strict=True):
        # A unit is dead when the activation's derivative is 0 at every
        # example of the batch: it passes no gradient back and cannot learn.
        mask = jax_act.dead_units(act, z, batch_axis=0).mask
        fractions.append(jnp.mean(mask))
        dead = dead + jnp.sum(mask)
        total += mask.size
    return jnp.stack([*fractions, dead / total])


def _make_epoch_fn(graphdef, tx, n_train: int, n_val: int):
    """One jitted function per activation: measure, then train an epoch.

    It returns the measurements of the parameters it was given (validation
    loss and accuracy, dead fractions on the training split, validation and
    test logits) together with the parameters after one more epoch. Putting
    both in one program, and evaluating the train, validation and test
    examples in one forward pass, compiles once per activation instead of
    three times: compilation is most of the demo's run time on a small CPU.
    """

    def loss_fn(params, x, y):
        return mean_nll(nnx.merge(graphdef, params)(x), y)

    def train_step(carry, batch):
        params, opt_state = carry
        x, y, rate = batch
        loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
        updates, opt_state = tx.update(grads, opt_state, params)
        updates = jax.tree.map(lambda u: rate * u, updates)
        return (optax.apply_updates(params, updates), opt_state), loss

    @jax.jit
    def epoch(params, opt_state, x_batches, y_batches, rates, x_eval, y_val):
        # x_eval is the train, validation and test features, concatenated.
        model = nnx.merge(graphdef, params)
        logits, preactivations = model.forward(x_eval)
        val_logits = logits[n_train : n_train + n_val]
        measured = {
            "val_loss": mean_nll(val_logits, y_val),
            "val_accuracy": jnp.mean(jnp.argmax(val_logits, axis=1) == y_val),
            "dead": _dead_fractions(
                model, [z[:n_train] for z in preactivations]
            ),
            "val_logits": val_logits,
            "test_logits": logits[n_train + n_val :],
        }
        (params, opt_state), losses = jax.lax.scan(
            train_step, (params, opt_state), (x_batches, y_batches, rates)
        )
        return measured, params, opt_state, losses

    return epoch


class Trainer:
    """The demo's model with one activation, ready to train from scratch.

    Every call of `run` starts again from the same initial weights (those
    of nnx.Rngs(seed), identical for every activation since no activation
    draws random numbers) and sees the same batches in the same order;
    only the learning rates may differ between calls.
    """

    def __init__(
        self,
        activation: str,
        data: Splits,
        config: DemoConfig,
        batches: np.ndarray,
    ):
        self.activation = activation
        self.data = data
        self.config = config
        self.batches = batches
        model = MLP(
            data.x_train.shape[1],
            config.widths,
            data.num_classes,
            activation,
            rngs=nnx.Rngs(config.seed),
        )
        self.graphdef, self.initial_params = nnx.split(model)
        self.tx = make_optimizer(config.weight_decay)
        self.x_train = jnp.asarray(data.x_train)
        self.y_train = jnp.asarray(data.y_train)
        self.x_eval = jnp.asarray(
            np.concatenate([data.x_train, data.x_val, data.x_test])
        )
        self.y_val = jnp.asarray(data.y_val)

        self._epoch_fn = _make_epoch_fn(
            self.graphdef, self.tx, len(data.y_train), len(data.y_val)
        )
        self._compiled = None
        self.compile_time_s = None

    def _compile(self):
        """Compiles the epoch program once, ahead of time, and times it.

        Compiling apart from the first call lets the record time
        compilation (most of the wall time of an activation here) and
        training separately.
        """
        if self._compiled is None:
            start = time.perf_counter()
            steps, batch = self.batches.shape[1:]
            features = self.data.x_train.shape[1]
            self._compiled = self._epoch_fn.lower(
                self.initial_params,
                self.tx.init(self.initial_params),
                jax.ShapeDtypeStruct((steps, batch, features), jnp.float32),
                jax.ShapeDtypeStruct((steps, batch), jnp.int32),
                jax.ShapeDtypeStruct((steps,), jnp.float32),
                self.x_eval,
                self.y_val,
            ).compile()
            self.compile_time_s = time.perf_counter() - start
        return self._compiled

    def run(
        self,
        rates: np.ndarray,
        progress: Callable[[int, dict], None] | None = None,
    ) -> dict:
        """Trains with the given learning rates, then evaluates.

        Args:
            rates: learning rate of every step [epochs, steps].
            progress: called with (epoch, latest metrics) before training
                (epoch 0) and after each epoch.

        Returns:
            Final metrics, per-epoch curves and reliability diagram data.
        """
        epoch_fn = self._compile()
        start = time.perf_counter()
        batches = self.batches
        params = self.initial_params
        opt_state = self.tx.init(params)
        epochs = batches.shape[0]
        curves = {
            "train_loss": [],
            "val_loss": [],
            "val_accuracy": [],
            "dead_fraction": [],
            "dead_fraction_per_layer": [],
        }
        train_loss = None
        diverged = False
        # Call epochs + 1 times: call k measures the parameters after k
        # epochs. The last call's extra epoch (on the last epoch's batches
        # again) is thrown away.
        for k in range(epochs + 1):
            index = batches[min(k, epochs - 1)]
            measured, new_params, new_opt_state, losses = epoch_fn(
                params,
                opt_state,
                self.x_train[index],
                self.y_train[index],
                rates[min(k, epochs - 1)],
                self.x_eval,
                self.y_val,
            )
            measured = jax.device_get(measured)
            dead = [float(d) for d in measured["dead"]]
            curves["train_loss"].append(train_loss)
            curves["val_loss"].append(float(measured["val_loss"]))
            curves["val_accuracy"].append(float(measured["val_accuracy"]))
            curves["dead_fraction"].append(dead[-1])
            curves["dead_fraction_per_layer"].append(dead[:-1])
            if progress is not None:
                progress(k, {name: v[-1] for name, v in curves.items()})
            if k == epochs:
                break
            losses = np.asarray(losses)
            diverged = diverged or not bool(np.all(np.isfinite(losses)))
            train_loss = float(np.mean(losses))
            params, opt_state = new_params, new_opt_state

        results = {
            "activation": self.activation,
            "description": ACTIVATIONS[self.activation][1],
            "peak_learning_rate": float(np.max(rates)),
            "diverged": diverged,
        }
        results.update(self._evaluate(measured))
        results["dead_fraction_final"] = curves["dead_fraction"][-1]
        results["dead_fraction_max"] = max(curves["dead_fraction"])
        results["dead_fraction_final_per_layer"] = curves[
            "dead_fraction_per_layer"
        ][-1]
        if self.activation == "prelu":
            model = nnx.merge(self.graphdef, params)
            slopes = [
                np.asarray(a.negative_slope[...]) for a in model.activations
            ]
            results["prelu_slopes"] = {
                "mean": [float(s.mean()) for s in slopes],
                "min": [float(s.min()) for s in slopes],
                "max": [float(s.max()) for s in slopes],
            }
        results["curves"] = curves
        results["compile_time_s"] = self.compile_time_s
        results["train_time_s"] = time.perf_counter() - start
        return results

    def _evaluate(self, measured: dict) -> dict:
        """Test metrics at T = 1 and at the T fitted on validation."""
        y_test = self.data.y_test
        test_logits = measured["test_logits"]
        temperature, t_grad = fit_temperature(
            measured["val_logits"], self.y_val, self.config.temperature_steps
        )
        out = {
            "test_accuracy": float(
                np.mean(np.argmax(test_logits, axis=1) == y_test)
            ),
            "temperature": temperature,
            "temperature_grad": t_grad,
        }
        for tag, t in (("before", 1.0), ("after", temperature)):
            probs, nll = _scaled_predictions(
                test_logits, jnp.asarray(y_test), jnp.float32(t)
            )
            ece, diagram = expected_calibration_error(np.asarray(probs), y_test)
            out[f"test_nll_{tag}"] = float(nll)
            out[f"ece_{tag}"] = ece
            out[f"reliability_{tag}"] = diagram
        return out
