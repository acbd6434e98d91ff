"""Benchmark cases and where they come from.

Each function family describes its cases in its own module
``bench/cases_<family>.py`` and calls :func:`register` at import time. The
harnesses never import those modules directly: :func:`load_cases` imports
every module named in :data:`CASE_MODULES`, skipping (with a note on stderr)
those that do not exist yet. A case that leaves ``family`` empty takes it
from the name of the module that registers it.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import importlib
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import jax
import numpy as np

# Modules that register cases, in the order their rows are printed.
CASE_MODULES = ["bench.cases_softmax", "bench.cases_gelu", "bench.cases_losses"]


@dataclasses.dataclass(frozen=True)
class SpeedCase:
    """A function timed against its baseline, forward and backward."""

    name: str  # row label, e.g. "softmax", "gelu[tanh]"
    ours: Callable[..., Any]  # jax_act function of the arrays
    baseline: Callable[..., Any]  # jax.nn / optax counterpart, same args
    # (shape, dtype name, generator) -> tuple of NumPy arrays, the arguments
    make_args: Callable[[tuple[int, ...], str, np.random.Generator], tuple]
    shapes: tuple[tuple[int, ...], ...]  # full-run shapes
    quick_shapes: tuple[tuple[int, ...], ...]  # smoke-test shapes (tiny)
    dtypes: tuple[str, ...] = ("float32", "bfloat16")
    # Also time forward+backward: the gradient of sum(out * cotangent), for
    # a fixed random cotangent, with respect to the first argument.
    backward: bool = True
    torch: Callable[..., Any] | None = None  # optional PyTorch peer
    family: str = ""


@dataclasses.dataclass(frozen=True)
class AccuracyCase:
    """A function whose error is measured in ULPs against a reference."""

    name: str
    ours: Callable[[jax.Array], jax.Array]  # elementwise or row function
    baseline: Callable[[jax.Array], jax.Array] | None
    # float64 in -> float64 out (or mpmath, rounded to float64)
    reference: Callable[[np.ndarray], np.ndarray]
    # (dtype name, quick) -> named input sets, as float64 arrays whose
    # values are representable in that dtype
    inputs: Callable[[str, bool], list[tuple[str, np.ndarray]]]
    dtypes: tuple[str, ...] = ("float32", "bfloat16", "float16")
    family: str = ""


Case = SpeedCase | AccuracyCase

_CASES: list[Case] = []
_LOADED: set[str] = set()


def register(case: SpeedCase | AccuracyCase) -> None:
    """Adds a case to the registry; called by the case modules on import.

    A case without a family takes it from the calling module's name:
    cases registered in bench/cases_gelu.py belong to "gelu".
    """
    if not isinstance(case, SpeedCase | AccuracyCase):
        raise TypeError(
            f"register() takes a SpeedCase or AccuracyCase, got {case!r}"
        )
    if not case.family:
        caller = sys._getframe(1).f_globals.get("__name__", "")
        case = dataclasses.replace(case, family=_family_of(caller))
    for other in _CASES:
        if (
            type(other) is type(case)
            and other.name == case.name
            and other.family == case.family
        ):
            raise ValueError(
                f"a {type(case).__name__} named {case.name!r} is already "
                f"registered (family {case.family!r}); names must be unique"
            )
    _CASES.append(case)


def _family_of(module_name: str) -> str:
    """bench.cases_softmax -> softmax."""
    leaf = module_name.rsplit(".", 1)[-1]
    return leaf.removeprefix("cases_")


def load_cases(modules: Sequence[str] | None = None) -> list[Case]:
    """Imports the case modules once and returns every registered case.

    `modules` defaults to CASE_MODULES (read at call time).
    """
    for module_name in CASE_MODULES if modules is None else modules:
        if module_name in _LOADED:
            continue
        try:
            importlib.import_module(module_name)
        except ModuleNotFoundError as err:
            # Only the case module itself may be missing (not written yet);
            # a missing import inside an existing module is a real error.
            if err.name != module_name:
                raise
            print(f"note: {module_name} not found, skipped", file=sys.stderr)
        _LOADED.add(module_name)
    return list(_CASES)


def _matches(name: str, patterns: Iterable[str] | None) -> bool:
    """Exact name or shell-style pattern; None or empty matches anything.

    An exact comparison comes first because names like "gelu[tanh]" read as
    character classes to fnmatch.
    """
    patterns = list(patterns or ())
    if not patterns:
        return True
    return any(name == p or fnmatch.fnmatchcase(name, p) for p in patterns)


def select(
    kind: type,
    families: Iterable[str] | None = None,
    names: Iterable[str] | None = None,
) -> list[Any]:
    """The loaded cases of one kind, filtered by family and by name."""
    return [
        case
        for case in load_cases()
        if isinstance(case, kind)
        and _matches(case.family, families)
        and _matches(case.name, names)
    ]
