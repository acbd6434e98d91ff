"""Flax layers for jax_act: PReLU with a learnable slope, and Activation.

Two flavours with the same arguments, one per Flax API::

    from jax_act.modules import nnx as act_nnx      # Flax NNX
    from jax_act.modules import linen as act_linen  # Flax Linen

Flax is imported only when one of those submodules is, so `import jax_act`
and `import jax_act.modules` work without it; importing a submodule without
Flax raises an ImportError that says what to install.
"""

import importlib
from types import ModuleType

__all__ = ["linen", "nnx"]


def __getattr__(name: str) -> ModuleType:
    # Import a submodule (and with it Flax) on first attribute access only.
    if name in __all__:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
