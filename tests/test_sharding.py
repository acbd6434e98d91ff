"""Runs tests/multidevice on 8 simulated CPU devices, in a subprocess.

XLA fixes the number of host devices when JAX starts, from XLA_FLAGS; the
rest of the suite runs on one device. So the sharded tests get a process
of their own, and this test passes when all of them do.
"""

import os
import pathlib
import subprocess
import sys

import pytest

HERE = pathlib.Path(__file__).resolve().parent


@pytest.mark.slow
def test_class_axis_sharded_over_8_devices():
    flags = os.environ.get("XLA_FLAGS", "")
    env = dict(
        os.environ,
        XLA_FLAGS=f"{flags} --xla_force_host_platform_device_count=8".strip(),
        JAX_PLATFORMS="cpu",
    )
    command = [
        sys.executable,
        "-m",
        "pytest",
        str(HERE / "multidevice"),
        "-q",
        "-p",
        "no:cacheprovider",
        "-p",
        "no:xdist",
    ]
    run = subprocess.run(
        command,
        cwd=HERE.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-3000:]
    # Every test ran: none was skipped for want of devices.
    assert "skipped" not in run.stdout, run.stdout[-3000:]


def test_sharding_figures_script_runs():
    # bench/sharding.py, which prints the figures the README quotes.
    command = [
        sys.executable,
        "-m",
        "bench.sharding",
        "--devices",
        "2",
        "--rows",
        "8",
        "--width",
        "4",
        "--classes",
        "64",
    ]
    run = subprocess.run(
        command,
        cwd=HERE.parent,
        env=dict(os.environ, JAX_PLATFORMS="cpu"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert run.stdout.count("all-reduce") >= 3, run.stdout
    assert "all-gather" not in run.stdout, run.stdout
