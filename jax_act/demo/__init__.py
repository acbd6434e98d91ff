"""The jax_act demo: one classifier trained once per activation.

`jax-act demo` (see `jax_act.cli`) trains a Flax NNX multilayer perceptron
on scikit-learn's bundled handwritten digits (or a user's .npz file), once
per activation, from the same initial weights and with the same batch
order, and reports test accuracy, test negative log-likelihood, expected
calibration error before and after temperature scaling, the fraction of
dead hidden units over training, and wall time: a table in the terminal, a
PNG figure and a JSON record in the output folder.

Unlike the library, the demo talks to people. It needs the `demo` extra
(Flax, Optax, scikit-learn, matplotlib, tqdm); importing this package does
not import them, running it does.
"""

from jax_act.demo._config import ACTIVATION_NAMES, SCHEDULES, DemoConfig
from jax_act.demo._data import DataError
from jax_act.demo._run import run

__all__ = ["ACTIVATION_NAMES", "SCHEDULES", "DataError", "DemoConfig", "run"]
