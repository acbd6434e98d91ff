"""Speed, accuracy and memory harnesses for jax_act (``python -m bench``).

``python -m bench report --out DIR`` (``make bench``) runs them all and
writes a Markdown report with plots and a JSON record; see bench/report.py.

Function families register their cases in ``bench/cases_<family>.py`` with
:func:`bench.registry.register`; see bench/registry.py for the two case
types and bench/timing.py for how everything is timed.
"""

from bench.registry import AccuracyCase, SpeedCase, register

__all__ = ["AccuracyCase", "SpeedCase", "register"]
