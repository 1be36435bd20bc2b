"""Cheap imports: the package and every verb's --help must not load torch, timm or Ray (``swiniqa --help``
answers in well under a second; benchmarks/cli_startup.py measures it). Each check runs in a fresh
interpreter, since this test process has long imported torch."""

from __future__ import annotations

import subprocess
import sys

import pytest

HEAVY = ("torch", "timm", "ray", "pandas", "matplotlib", "scipy", "pyarrow")


def _heavy_after(code: str) -> list[str]:
    probe = code + f"\nimport sys\nprint(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    last = r.stdout.strip().splitlines()[-1] if r.stdout.strip() else ""
    return [m for m in last.split(",") if m]


def test_importing_the_packages_loads_no_torch():
    assert _heavy_after("import swiniqa, tune_experiments, swiniqa.evaluation, swiniqa.training") == []


def test_lazy_public_names_still_resolve():
    r = subprocess.run([sys.executable, "-c", "import swiniqa, sys; c = swiniqa.TrainConfig(); "
                        "print(c.model_size, callable(swiniqa.build_model), 'torch' in sys.modules)"],
                       capture_output=True, text=True, timeout=120)
    assert r.stdout.split() == ["base", "True", "True"], r.stderr[-2000:]


@pytest.mark.parametrize("verb", ["", "train", "config", "import-weights", "data", "eval", "predict", "complexity",
                                  "tune", "report", "pull"])
def test_help_loads_no_torch(verb):
    argv = ([verb] if verb else []) + ["--help"]
    code = ("import contextlib, io\nfrom swiniqa.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            f"    try:\n        main({argv!r})\n    except SystemExit as e:\n        assert e.code == 0, e.code\n")
    assert _heavy_after(code) == []
