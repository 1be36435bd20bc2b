"""Every user error: one line on stderr naming what/where/fix, non-zero exit, no traceback."""

import subprocess
import sys

import pytest

from swiniqa.cli import main


@pytest.mark.core
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


@pytest.mark.core
def test_config_verb_prints_every_key(capsys):
    import json

    import dataclasses

    import yaml

    from swiniqa.config import TrainConfig, preset

    keys = {f.name for f in dataclasses.fields(TrainConfig)}
    assert len(keys) > 40
    assert main(["config", "--preset", "paper", "--json"]) == 0
    cfg = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(cfg) == keys  # every key, nothing else
    assert cfg == json.loads(json.dumps(preset("paper").to_dict()))  # and the paper preset's value of each
    assert cfg["model_size"] == "base" and cfg["lr"] == 5e-7
    # the human form (YAML) too, with flags and --set applied on top of the preset
    assert main(["config", "--preset", "paper", "--epochs", "3", "--set", "lr=2e-6"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert set(printed) == keys and printed["epochs"] == 3 and printed["lr"] == 2e-6
    assert {k: v for k, v in printed.items() if k not in ("epochs", "lr")} == \
        {k: v for k, v in cfg.items() if k not in ("epochs", "lr")}
