"""The import contracts in pyproject.toml (``[tool.importlinter]``) hold: imports go downwards through the layers
of docs/ARCHITECTURE.md, no library module imports the CLI, serving and pull need no training code, no package
has an import cycle.

The second test shows the check is live: a scratch copy of the tree with one bad import fails it, naming the
contract and the import.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT = ("import sys; from importlinter.cli import lint_imports; "
        "sys.exit(lint_imports(config_filename='pyproject.toml', no_cache=True, no_logo=True))")


def lint(root: Path) -> subprocess.CompletedProcess:
    """``lint-imports`` run in ``root`` (its ``swiniqa`` and ``tune_experiments`` come first on the path)."""
    return subprocess.run([sys.executable, "-c", LINT], cwd=root, capture_output=True, text=True, timeout=300)


@pytest.mark.core
def test_import_contracts_hold():
    r = lint(ROOT)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "0 broken" in r.stdout


@pytest.mark.parametrize("module, line, contract, shown", [
    # base imports the training layer
    ("swiniqa/storage.py", "from swiniqa.training import trainer", "imports go downwards", "swiniqa.storage -> swiniqa.training.trainer"),
    # evaluation imports the CLI
    ("swiniqa/evaluation/inference.py", "from swiniqa import cli_common", "no library module imports the CLI",
     "swiniqa.evaluation.inference -> swiniqa.cli_common"),
    # serving is above training, but scores checkpoints: it must not need training code
    ("swiniqa/serving/score.py", "from swiniqa.training import session", "never training code",
     "swiniqa.serving.score -> swiniqa.training.session"),
    # loop -> local -> loop: the cycle a re-export in loop.py once made
    ("swiniqa/training/loop.py", "from swiniqa.training import local", "no import cycles", ".loop -> .local"),
])
def test_a_bad_import_breaks_its_contract(tmp_path, module, line, contract, shown):
    for part in ("swiniqa", "tune_experiments"):
        shutil.copytree(ROOT / part, tmp_path / part, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    target = tmp_path / module
    target.write_text(target.read_text() + f"\n{line}  # noqa: E402,F401  (scratch: must break a contract)\n")
    r = lint(tmp_path)
    out = r.stdout + r.stderr
    assert r.returncode != 0, out
    broken = out.split("Broken contracts", 1)[-1]
    assert contract in broken and shown in broken, out
