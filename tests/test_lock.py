"""requirements.lock (what scripts/setup.sh installs for the demo, the tests and CI) pins every dependency
of pyproject.toml, each at a version pyproject's own floor accepts, for the Python/platform it names."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LOCK = os.path.join(ROOT, "requirements.lock")

pytestmark = pytest.mark.core


def _lock() -> tuple[str, dict[str, str]]:
    with open(LOCK) as f:
        lines = f.read().splitlines()
    target = lines[1].removeprefix("# for: ")
    pins = {}
    for line in lines:
        if line.strip() and not line.startswith("#"):
            m = re.fullmatch(r"([A-Za-z0-9_.\-]+)==([^\s;]+)", line.strip())
            assert m, f"not an exact pin: {line!r}"
            pins[canonicalize_name(m.group(1))] = m.group(2)
    return target, pins


def test_lock_pins_every_dependency_within_pyprojects_floors():
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        project = tomllib.load(f)["project"]
    target, pins = _lock()
    assert re.fullmatch(r"python \d+\.\d+, \w+, \w+", target)
    wanted = [Requirement(r) for r in project["dependencies"] + project["optional-dependencies"]["dev"]]
    for req in wanted:
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} is not pinned in requirements.lock: run scripts/lock.sh"
        assert req.specifier.contains(pins[name], prereleases=True), \
            f"requirements.lock pins {req.name}=={pins[name]}, outside pyproject's {req.specifier}"
    assert "swiniqa" not in pins


def test_this_environment_is_the_lock_when_the_lock_is_for_this_platform():
    """The suite runs in the environment setup.sh built: on the lock's platform every pin is installed."""
    from importlib import metadata

    target, pins = _lock()
    here = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "lock_target.py")], capture_output=True,
                          text=True, check=True).stdout.strip()
    if here != target or os.environ.get("SWINIQA_NO_LOCK"):
        pytest.skip(f"requirements.lock is for {target}, this is {here}")
    installed = {canonicalize_name(d.metadata["Name"]): d.version for d in metadata.distributions()
                 if d.metadata.get("Name")}
    wrong = {n: (v, installed.get(n)) for n, v in pins.items() if installed.get(n) != v}
    assert not wrong, f"installed versions differ from requirements.lock (pinned, installed): {wrong}"
