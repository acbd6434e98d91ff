"""Speed and accuracy harnesses for jax_act (run as ``python -m bench``).

Function families register their cases in ``bench/cases_<family>.py`` with
:func:`bench.registry.register`; see bench/registry.py for the two case
types and bench/timing.py for how everything is timed.
"""

from bench.registry import AccuracyCase, SpeedCase, register

__all__ = ["AccuracyCase", "SpeedCase", "register"]
