"""Every user error: one line on stderr naming what/where/fix, non-zero exit, no traceback."""

import subprocess
import sys

import pytest

from swiniqa.cli import main


@pytest.mark.parametrize("argv,needle", [
    (["train", "--preset", "nope"], "unknown preset 'nope'"),
    (["train", "--preset", "demo", "--set", "lrr=1"], "unknown config key 'lrr'"),
    (["train", "--preset", "demo", "--set", "lr=fast"], "'lr'"),
    (["train", "--preset", "demo", "--set", "novalue"], "key=value"),
    (["train", "--preset", "demo", "--dataset", "imagenet"], "unknown dataset 'imagenet'"),
    (["train", "--preset", "paper", "--data-root", "/nonexistent/koniq"], "/nonexistent/koniq"),
    (["train", "--preset", "demo", "--output", "/proc/forbidden"], "/proc/forbidden"),
    (["train", "--config", "/nonexistent.yaml"], "config file not found"),
    (["data", "check", "--dataset", "spaq", "--root", "/nonexistent/spaq"], "/nonexistent/spaq"),
])
def test_user_errors_are_one_line(argv, needle, capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    rc = main(argv)
    err = capsys.readouterr().err.strip()
    assert rc != 0
    assert len(err.splitlines()) == 1 and needle in err and "Traceback" not in err
    assert err.startswith("swiniqa: error:")


def test_console_script_exit_code_and_no_traceback():
    r = subprocess.run([sys.executable, "-m", "swiniqa.cli", "train", "--set", "epochs=0"],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "'epochs'" in r.stderr and "Traceback" not in r.stderr


def test_debug_flag_shows_the_traceback():
    r = subprocess.run([sys.executable, "-m", "swiniqa.cli", "--debug", "train", "--set", "epochs=0"],
                       capture_output=True, text=True)
    assert r.returncode != 0 and "Traceback" in r.stderr


def test_config_verb_prints_every_key(capsys):
    import json

    assert main(["config", "--preset", "paper", "--json"]) == 0
    cfg = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert cfg["model_size"] == "base" and cfg["lr"] == 5e-7
