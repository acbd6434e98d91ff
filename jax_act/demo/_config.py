"""The demo's settings, importable without Flax (the CLI parses into it)."""

import dataclasses

# The activations the demo compares, in table order. The three GELU forms
# are jax_act.gelu with approximate="none", "tanh" and "sigmoid".
ACTIVATION_NAMES = (
    "relu",
    "leaky_relu",
    "prelu",
    "gelu_exact",
    "gelu_tanh",
    "gelu_sigmoid",
    "silu",
)

SCHEDULES = ("cosine", "constant")


@dataclasses.dataclass(frozen=True)
class DemoConfig:
    """Everything that decides a demo run; the same for every activation.

    Attributes:
        activations: names from ACTIVATION_NAMES, in table order.
        epochs: passes over the training split.
        batch_size: examples per step (the last partial batch is dropped).
        learning_rate: AdamW's peak learning rate.
        weight_decay: AdamW's decoupled weight decay (weight matrices only).
        widths: hidden layer widths.
        schedule: "cosine" (5 per cent linear warm-up, then cosine decay to
            0) or "constant".
        seed: seeds the split, the initial weights and the batch order.
        data: a .npz file with `x` and `y`, or None for the digits.
        subset: keep only this many examples (quick runs); None keeps all.
        temperature_steps: gradient steps of the temperature fit.
        dying_relu: also train every activation a second time at a
            constant, high learning rate, where ReLU units die.
        dying_learning_rate: the learning rate of that second run.
    """

    activations: tuple[str, ...] = ACTIVATION_NAMES
    epochs: int = 30
    batch_size: int = 64
    learning_rate: float = 3e-3
    weight_decay: float = 1e-4
    widths: tuple[int, ...] = (128, 128)
    schedule: str = "cosine"
    seed: int = 0
    data: str | None = None
    subset: int | None = None
    temperature_steps: int = 300
    dying_relu: bool = True
    dying_learning_rate: float = 0.05
