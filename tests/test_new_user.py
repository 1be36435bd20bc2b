"""What a new user trips on (issue #11): each item's reproduction, made small. No Ray starts here."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from swiniqa.cli import main
from swiniqa.errors import ConfigError, SwiniqaError

sys.path.insert(0, os.path.dirname(__file__))
from test_dataset_interface import make_csv_dataset  # noqa: E402


@pytest.fixture(autouse=True)
def _no_debug_leak(monkeypatch):
    """``main([... "--debug"])`` sets SWINIQA_DEBUG/SWINIQA_RAY_LOGS for Ray workers: undone after each test."""
    for k in ("SWINIQA_DEBUG", "SWINIQA_RAY_LOGS", "SWINIQA_MAX_IMAGE_PIXELS"):
        monkeypatch.setenv(k, "")


def _last_json(capsys) -> tuple[dict, str]:
    out = capsys.readouterr()
    return json.loads(out.out.strip().splitlines()[-1]), out.err


# ----------------------------------------------------------------------------- 1: relative paths
def test_relative_labels_mean_the_current_directory(tmp_path, capsys, monkeypatch):
    make_csv_dataset(tmp_path / "data" / "good")
    monkeypatch.chdir(tmp_path / "data")
    rc = main(["data", "check", "--dataset", "csv", "--labels", "good/labels.csv", "--images", "good/images",
               "--patch-size", "32", "--json"])
    rep, err = _last_json(capsys)
    assert rc == 0, err
    assert rep["images"] == 8 and rep["root"] == str(tmp_path / "data" / "good")


def test_library_relative_labels_without_root_mean_the_current_directory(tmp_path, monkeypatch):
    from swiniqa.data.records import read_dataset

    make_csv_dataset(tmp_path / "data" / "good")
    monkeypatch.chdir(tmp_path / "data")
    info = read_dataset("csv", None, labels="good/labels.csv", images="good/images")
    assert len(info.records) == 8 and info.root == str(tmp_path / "data" / "good")


def test_relative_data_root_from_another_folder(tmp_path, capsys, monkeypatch):
    make_csv_dataset(tmp_path / "data" / "good")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert main(["data", "check", "--dataset", "csv", "--data-root", "../data/good", "--labels",
                 "../data/good/labels.csv", "--patch-size", "32", "--json"]) == 0
    assert _last_json(capsys)[0]["images"] == 8


# ----------------------------------------------------------------------------- 3: resources
def test_local_ray_refuses_workers_beyond_the_machine(monkeypatch):
    import ray

    from swiniqa.resources import require_resources

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 2.0})
    monkeypatch.setattr(ray, "available_resources", lambda: {"CPU": 2.0})
    with pytest.raises(SwiniqaError, match=r"4 worker\(s\) x 1 CPU need 4 CPU but this machine has 2 CPU; "
                                           r"use --num-workers 2"):
        require_resources(4, 1.0, False)
    with pytest.raises(SwiniqaError, match=r"--gpu was given but this machine has no GPU; drop --gpu"):
        require_resources(2, 1.0, True)
    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 16.0, "GPU": 1.0})
    with pytest.raises(SwiniqaError, match=r"need 8 CPU \+ 2 GPU but this machine has 16 CPU, 1 GPU; "
                                           r"use --num-workers 1"):
        require_resources(2, 4.0, True)
    assert require_resources(2, 1.0, False) is None


def test_train_num_workers_beyond_the_cpus_is_refused_at_once(tmp_path, capsys, monkeypatch):
    """`swiniqa train --num-workers 4` on a 2-CPU local Ray: exit 2 with the numbers, no Train run started."""
    import ray

    import swiniqa.training.trainer as trainer

    import swiniqa.resources as resources

    make_csv_dataset(tmp_path / "d", n=12, size=(64, 64))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr(resources, "_local_cpus", lambda: 64)  # past the CLI's pre-check: run_training's own
    monkeypatch.setattr(trainer, "ensure_ray", lambda *a, **k: None)
    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 2.0})
    monkeypatch.setattr(ray, "available_resources", lambda: {"CPU": 2.0})
    monkeypatch.setattr(ray, "nodes", lambda: [{"Alive": True, "Resources": {"CPU": 2.0}}])

    def no_trainer(*a, **k):
        raise AssertionError("no TorchTrainer may be built")

    monkeypatch.setattr(trainer, "make_trainer", no_trainer)
    rc = main(["train", "--preset", "demo", "--dataset", "csv", "--data-root", str(tmp_path / "d"), "--num-workers",
               "4", "--set", "patch_size=64", "--output", str(tmp_path / "runs"), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and "need 4 CPU but this machine has 2 CPU" in err and "--num-workers 2" in err


@pytest.mark.parametrize("verb", [["train"], ["tune", "lr"]])
def test_cli_refuses_before_reading_data_or_starting_ray(verb, tmp_path, capsys, monkeypatch):
    import swiniqa.resources as resources
    import swiniqa.training.trainer as trainer
    import tune_experiments.driver as driver

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr(resources, "_local_cpus", lambda: 2)
    # As a new process runs it: no Ray started yet (earlier tests in this session may have started one).
    import ray

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    for mod, fn in ((trainer, "run_training"), (trainer, "prepare_splits"), (driver, "run_study")):
        monkeypatch.setattr(mod, fn, lambda *a, **k: pytest.fail("work started"))
    rc = main([*verb, "--preset", "demo", "--num-workers", "3", "--output", str(tmp_path)])
    err = capsys.readouterr().err
    import re

    assert rc == 2 and re.search(r"3 worker\(s\) x [\d.]+ CPU need [\d.]+ CPU but this machine has 2 CPU; "
                                 r"use --num-workers 2", err), err


def test_cluster_run_keeps_printing_that_it_waits(monkeypatch, caplog):
    import ray

    from swiniqa.resources import require_resources

    free = {"CPU": 1.0}
    monkeypatch.setenv("RAY_ADDRESS", "ray://head:10001")
    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 2.0})
    monkeypatch.setattr(ray, "available_resources", lambda: dict(free))
    with caplog.at_level(logging.WARNING, logger="swiniqa.resources"):
        th = require_resources(8, 1.0, False, interval_s=0.05)
        assert th is not None
        import time

        def lines():
            return [r.getMessage() for r in caplog.records if "waiting for resources" in r.getMessage()]

        deadline = time.monotonic() + 20
        while len(lines()) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        free["CPU"] = 8.0  # the autoscaler added nodes: the line stops
        th.join(5)
    lines = lines()
    assert len(lines) >= 3 and "asks for 8 CPU" in lines[0] and "1 of 2 CPU free" in lines[0]
    assert not th.is_alive()


# ----------------------------------------------------------------------------- 5: tiny epochs still step
def test_epoch_with_fewer_patches_than_a_batch_makes_one_step(tmp_path):
    from swiniqa.data.loader import ImageCache, TrainPatches
    from swiniqa.data.records import read_dataset

    make_csv_dataset(tmp_path / "d", n=3, size=(40, 40))
    info = read_dataset("csv", str(tmp_path / "d"))
    tp = TrainPatches(info.records, patch_size=32, patches_per_image=2, batch_size=32, seed=0,
                      cache=ImageCache(None, None, 32), threads=1)
    batches = list(tp.epoch(1))
    assert len(tp) == 1 and len(batches) == 1 and batches[0][0].shape == (6, 3, 32, 32)
    big = TrainPatches(info.records * 20, patch_size=32, patches_per_image=2, batch_size=32, seed=0,
                       cache=ImageCache(None, None, 32), threads=1)
    assert [b[0].shape[0] for b in big.epoch(1)] == [32] * 3  # full batches only, as before


# ----------------------------------------------------------------------------- 6: outputs checked first
def test_eval_predictions_path_is_checked_before_any_work(tmp_path, capsys):
    make_csv_dataset(tmp_path / "d")
    (tmp_path / "afile").write_text("x")
    for bad, why in ((tmp_path / "afile" / "p.csv", "afile is a file"), (tmp_path, "is a folder")):
        rc = main(["eval", "--checkpoint", str(tmp_path / "no-such-ckpt"), "--dataset", "csv", "--data-root",
                   str(tmp_path / "d"), "--predictions", str(bad)])
        err = capsys.readouterr().err
        assert rc == 2 and "--predictions" in err and why in err and "no-such-ckpt" not in err


# ----------------------------------------------------------------------------- 8: global flags anywhere
@pytest.mark.parametrize("argv", [["--debug", "config", "--preset", "demo", "--json"],
                                  ["config", "--preset", "demo", "--debug", "--json"],
                                  ["--json", "config", "--preset", "demo", "--quiet"]])
def test_debug_json_quiet_in_either_position(argv, capsys):
    assert main(argv) == 0
    assert _last_json(capsys)[0]["dataset"] == "demo"


def test_every_verb_takes_the_global_flags():
    from swiniqa.cli import build_parser

    p = build_parser()
    for verb in (["train"], ["config"], ["data", "check"], ["data", "demo"], ["pull", "x", "--dest", "y"],
                 ["eval", "--checkpoint", "c"], ["predict", "--checkpoint", "c", "a.jpg"], ["tune", "lr"],
                 ["report", "e"], ["complexity"], ["import-weights", "f", "--out", "o"]):
        a = p.parse_args([*verb, "--debug", "--json", "--quiet"])
        assert a.debug and a.json and a.quiet


# ----------------------------------------------------------------------------- 9: user errors, not internal
def test_data_demo_out_a_file_is_a_user_error_and_leaves_nothing(tmp_path, capsys):
    f = tmp_path / "afile"
    f.write_text("x")
    assert main(["data", "demo", "--out", str(f)]) == 2
    err = capsys.readouterr().err
    assert "is a file" in err and "internal error" not in err
    assert sorted(os.listdir(tmp_path)) == ["afile"]


def test_data_demo_on_a_failing_file_system_removes_its_temp_folder(tmp_path, capsys, monkeypatch):
    from swiniqa.data import demo

    def full(tmp, progress):
        (tmp / "images").mkdir()
        (tmp / "images" / "x.png").write_bytes(b"x" * 100)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(demo, "_generate", full)
    assert main(["data", "demo", "--out", str(tmp_path / "demo")]) == 2
    err = capsys.readouterr().err
    assert "No space left on device" in err and "internal error" not in err
    assert os.listdir(tmp_path) == []


def test_non_utf8_config_file_is_a_user_error(tmp_path, capsys):
    y = tmp_path / "c.yaml"
    y.write_bytes(b"lr: 1e-3\nname: caf\xe9\n")
    assert main(["config", "--config", str(y)]) == 2
    err = capsys.readouterr().err
    assert "not UTF-8" in err and "internal error" not in err


def test_pull_into_an_unwritable_dest_is_a_user_error_and_leaves_nothing(tmp_path, capsys, monkeypatch):
    import tempfile

    import torch

    from swiniqa.config import preset
    from swiniqa.checkpoints import write_checkpoint

    write_checkpoint(tmp_path / "run" / "checkpoint_epoch0001", {"w": torch.zeros(3)}, preset("demo"),
                     {"epoch": 1, "val_srcc": 0.5})

    def ro(*a, **k):
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(tempfile, "mkdtemp", ro)
    assert main(["pull", str(tmp_path / "run"), "--dest", str(tmp_path / "dest")]) == 2
    err = capsys.readouterr().err
    assert "Read-only file system" in err and "--dest" in err and "internal error" not in err
    assert not (tmp_path / "dest").exists()


# ----------------------------------------------------------------------------- 10: notes shown
def test_dmos_direction_note_is_shown_by_data_check_and_eval(tmp_path, capsys):
    make_csv_dataset(tmp_path / "d", column="dmos")
    assert main(["data", "check", "--dataset", "csv", "--data-root", str(tmp_path / "d"), "--score-col", "dmos",
                 "--patch-size", "32"]) == 0
    assert "--lower-is-better" in capsys.readouterr().out
    from swiniqa.checkpoints import write_checkpoint
    from test_evaluation import _checkpoint

    ck = _checkpoint(tmp_path / "ck")
    assert main(["eval", "--checkpoint", str(ck), "--dataset", "csv", "--data-root", str(tmp_path / "d"),
                 "--patches", "1"]) == 0
    err = capsys.readouterr().err
    assert "note: column dmos taken as higher = better" in err


def test_train_shows_skipped_images_and_check_warnings_before_it_starts(tmp_path, capsys, monkeypatch):
    """What `train --skip-bad-images` prints (stderr, before Ray would start): the skipped file and the
    data check's "scaled up" warning, through the CLI's log handler."""
    import swiniqa.training.trainer as trainer

    make_csv_dataset(tmp_path / "d", n=12, size=(40, 40))
    (tmp_path / "d" / "images" / "im3.png").write_bytes(b"not a png")

    class RayWouldStart(Exception):
        pass

    def stop(*a, **k):
        raise RayWouldStart

    monkeypatch.setattr(trainer, "ensure_ray", stop)
    with pytest.raises(RayWouldStart):
        main(["train", "--preset", "demo", "--dataset", "csv", "--data-root", str(tmp_path / "d"),
              "--skip-bad-images", "--set", "patch_size=64", "--output", str(tmp_path / "runs"), "--debug"])
    err = capsys.readouterr().err
    assert "note: skipped 1 unreadable image(s)" in err and "im3.png" in err
    assert "scaled up" in err and "note: labels" in err


# ----------------------------------------------------------------------------- 11: smaller ones
@pytest.mark.parametrize("kv", ["lr=inf", "weight_decay=nan", "grad_clip=nan", "lr_ratio=inf"])
def test_non_finite_numbers_are_refused(kv, capsys):
    assert main(["config", "--preset", "demo", "--set", kv]) == 2
    assert "finite" in capsys.readouterr().err


def test_yaml_error_names_line_and_column(tmp_path):
    from swiniqa.config import load_file

    y = tmp_path / "c.yaml"
    y.write_text("lr: 1e-3\nepochs: [1, 2\nseed: 3\n")
    with pytest.raises(ConfigError, match=r"c\.yaml line 3 column 5"):
        load_file(y)
    j = tmp_path / "c.json"
    j.write_text('{"lr": 1e-3,\n "epochs": }\n')
    with pytest.raises(ConfigError, match=r"c\.json line 2 column 12"):
        load_file(j)


def test_version_flag_prints_the_package_version():
    r = subprocess.run([sys.executable, "-m", "swiniqa.cli", "--version"], capture_output=True, text=True)
    from swiniqa import __version__

    assert r.returncode == 0 and r.stdout.strip() == f"swiniqa {__version__}"


def test_data_check_lists_every_label_problem_with_exit_1(tmp_path, capsys):
    make_csv_dataset(tmp_path / "d", extra="bad1.png,oops,g\nbad2.png,,g\nim0.png,3,g\n")
    assert main(["data", "check", "--dataset", "csv", "--data-root", str(tmp_path / "d"), "--json"]) == 1
    rep, _ = _last_json(capsys)
    whys = " | ".join(e["why"] for e in rep["errors"])
    assert len(rep["errors"]) == 3 and "'oops', not a number" in whys and "is empty" in whys and "again" in whys


def test_huge_image_is_refused_by_name_and_allowed_by_the_key(tmp_path, recwarn):
    from swiniqa.data import images

    p = tmp_path / "big.png"
    Image.new("RGB", (300, 200)).save(p)
    old = images._max_pixels
    try:
        images.set_max_image_pixels(50_000)
        with pytest.raises(Exception, match=r"300x200 = 0.1 MP is above max_image_pixels=50000.*"
                                            r"--max-image-pixels 60000"):
            images.decode_image(str(p))
        images.set_max_image_pixels(60_000)
        assert images.decode_image(str(p))[1] == (300, 200)
    finally:
        images.set_max_image_pixels(old)
    assert not [w for w in recwarn if "DecompressionBomb" in type(w.message).__name__]


def test_pull_json_has_checkpoints(tmp_path, capsys):
    import torch

    from swiniqa.config import preset
    from swiniqa.checkpoints import write_checkpoint

    write_checkpoint(tmp_path / "run" / "checkpoint_epoch0001", {"w": torch.zeros(3)}, preset("demo"),
                     {"epoch": 1, "val_srcc": 0.5})
    assert main(["pull", str(tmp_path / "run"), "--dest", str(tmp_path / "dest"), "--json"]) == 0
    res, _ = _last_json(capsys)
    assert res["checkpoints"][0]["checkpoint"] == str(tmp_path / "dest" / "best") and "pulled" not in res


def test_help_texts_describe_the_flags(capsys):
    from swiniqa.cli import build_parser

    p = build_parser()
    assert "internal" not in p.format_help() and "parses arguments" not in p.format_help()
    for verb in (["train"], ["data", "check"], ["data", "demo"], ["eval"], ["predict"], ["import-weights"]):
        with pytest.raises(SystemExit):
            p.parse_args([*verb, "--help"])
        text = capsys.readouterr().out
        for flag in ("--dataset", "--data-root", "--model-size", "--backbone", "--out"):
            if flag in text:
                line = text[text.index(flag):].split("\n\n")[0]
                assert len(line.split()) > 3, (verb, flag)  # a description follows the flag
    with pytest.raises(SystemExit):
        p.parse_args(["import-weights", "--help"])
    iw = capsys.readouterr().out
    assert "--epochs" not in iw and "--num-workers" not in iw and "--model-size" in iw


# ----------------------------------------------------------------------------- 4 (pull's side)
def test_pull_skips_a_truncated_checkpoint_by_name_and_takes_the_next(tmp_path, capsys, monkeypatch):
    import torch

    from swiniqa.config import preset
    from swiniqa.checkpoints import write_checkpoint

    good = write_checkpoint(tmp_path / "run" / "checkpoint_epoch0001", {"w": torch.zeros(300)}, preset("demo"),
                            {"epoch": 1, "val_srcc": 0.5})
    bad = write_checkpoint(tmp_path / "run" / "checkpoint_epoch0002", {"w": torch.zeros(300)}, preset("demo"),
                           {"epoch": 2, "val_srcc": 0.9})
    w = Path(bad) / "model.safetensors"
    w.write_bytes(w.read_bytes()[:-100])
    from swiniqa import pull as pull_mod

    copied = []
    real_copy = pull_mod._copy_checkpoint
    monkeypatch.setattr(pull_mod, "_copy_checkpoint", lambda c, d: copied.append(c.name) or real_copy(c, d))
    assert main(["pull", str(tmp_path / "run"), "--dest", str(tmp_path / "dest"), "--json"]) == 0
    res, err = _last_json(capsys)
    assert res["checkpoints"][0]["name"].endswith("checkpoint_epoch0001")
    assert "incomplete checkpoint" in err and "checkpoint_epoch0002 skipped: model.safetensors has" in err
    assert copied == ["checkpoint_epoch0001"]  # found by the source's manifest, never downloaded
    assert os.listdir(tmp_path / "dest") == ["best"]
    assert Path(good).is_dir()


def test_pull_of_only_incomplete_checkpoints_fails_and_leaves_no_dest(tmp_path, capsys):
    import torch

    from swiniqa.config import preset
    from swiniqa.checkpoints import write_checkpoint

    bad = write_checkpoint(tmp_path / "run" / "checkpoint_epoch0001", {"w": torch.zeros(3)}, preset("demo"),
                           {"epoch": 1, "val_srcc": 0.5})
    (Path(bad) / "config.json").write_text("")  # a full disk left it empty
    assert main(["pull", str(tmp_path / "run"), "--dest", str(tmp_path / "dest")]) == 2
    err = capsys.readouterr().err
    assert "incomplete" in err and "config.json" in err and "internal error" not in err
    assert not (tmp_path / "dest").exists()


# ----------------------------------------------------------------------------- the README's examples, as written
def _readme_block(heading: str) -> list[str]:
    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = text[text.index(heading):].split("```bash\n", 1)[1].split("```", 1)[0]
    return [ln.split("  #")[0].split() for ln in block.splitlines() if ln.startswith("swiniqa ")]


def test_readme_data_examples_run_as_written(tmp_path, capsys, monkeypatch):
    """The csv lines of README's `swiniqa data` block, run as written from the folder holding the files,
    and with the same relative paths from a sub-folder (``../``); `train` up to the point Ray would start."""
    import swiniqa.training.trainer as trainer

    make_csv_dataset(tmp_path / "w", n=12, size=(40, 40))
    os.rename(tmp_path / "w" / "labels.csv", tmp_path / "w" / "scores.csv")
    os.rename(tmp_path / "w" / "images", tmp_path / "w" / "imgs")
    (tmp_path / "w" / "my.yaml").write_text("dataset: csv\nlabels: scores.csv\nimages: imgs\nscore_col: mos\n"
                                            "model_size: nano\npatch_size: 32\nresize: none\n")
    (tmp_path / "w" / "sub").mkdir()
    lines = [argv for argv in _readme_block("### `swiniqa data`")
             if "csv" in argv or "--config" in argv]
    assert len(lines) == 3, lines

    class RayWouldStart(Exception):
        pass

    def stop(*a, **k):
        raise RayWouldStart

    monkeypatch.setattr(trainer, "ensure_ray", stop)
    for cwd, prefix in ((tmp_path / "w", ""), (tmp_path / "w" / "sub", "../")):
        monkeypatch.chdir(cwd)
        for argv in lines:
            argv = [a if a.startswith("-") or a in ("csv", "mos", "demo", "data", "check", "train")
                    else prefix + a for a in argv[1:]]
            if argv[0] == "train":
                with pytest.raises(RayWouldStart):
                    main([*argv, "--output", str(tmp_path / "runs"), "--set", "patch_size=32", "--quiet", "--debug"])
                continue
            rc = main([*argv, "--json"])
            out = capsys.readouterr()
            assert rc == 0, (cwd, argv, out.err)
            rep = json.loads(out.out.strip().splitlines()[-1])
            assert rep["images"] == 12 and rep["root"] == str(tmp_path / "w"), rep


def test_official_readers_name_every_bad_label_row(tmp_path):
    from swiniqa.data.readers.csv_reader import LabelErrors
    from swiniqa.data.records import read_dataset

    (tmp_path / "distorted_images").mkdir()
    (tmp_path / "mos_with_names.txt").write_text("5.1 i01_01_1.bmp\nabc i01_01_2.bmp\n4.0\n3.2 i01_01_1.bmp\n")
    with pytest.raises(LabelErrors) as e:
        read_dataset("tid2013", str(tmp_path))
    assert len(e.value.problems) == 3
    assert "line 2" in e.value.problems[0] and "line 3" in e.value.problems[1] and "again" in e.value.problems[2]


def test_readme_eval_and_pull_examples_run_with_their_placeholders_filled(tmp_path, capsys, monkeypatch):
    """README's `swiniqa eval --dataset spaq ...` and local `swiniqa pull ...` lines, with CKPT, /data/SPAQ and
    runs/<experiment> replaced by relative paths to a checkpoint, a SPAQ-layout fixture and a run folder."""
    from fixtures_datasets import _spaq
    from test_evaluation import _checkpoint

    _spaq(tmp_path / "data" / "SPAQ", 4)
    _checkpoint(tmp_path / "runs" / "exp" / "checkpoint_epoch0001", val_srcc=0.4)
    _checkpoint(tmp_path / "runs" / "exp" / "checkpoint_epoch0002", val_srcc=0.6)
    monkeypatch.chdir(tmp_path)
    fill = {"CKPT": "runs/exp", "/data/SPAQ": "data/SPAQ", "runs/<experiment>": "runs/exp"}
    ev = [a for a in _readme_block("### `swiniqa eval`") if "spaq" in a][0]
    assert main([fill.get(a, a) for a in ev[1:]] + ["--patches", "1"]) == 0
    res, _ = _last_json(capsys)
    assert res["n_images"] == 4 and os.path.isfile(tmp_path / "preds.csv") and res["dataset"] == "spaq"
    pl = [a for a in _readme_block("### `swiniqa pull`") if "runs/<experiment>" in a][0]
    assert main([fill.get(a, a) for a in pl[1:]]) == 0
    res, _ = _last_json(capsys)
    assert [c["name"] for c in res["checkpoints"]] == ["checkpoint_epoch0002", "checkpoint_epoch0001"]
    assert res["checkpoint"] == str(tmp_path / "best" / "rank1_checkpoint_epoch0002")


def test_pull_checks_the_copy_against_the_manifest_hashes(tmp_path, capsys):
    """Same size, other bytes (a corrupt write the listing cannot see): refused by the manifest's sha256."""
    import torch

    from swiniqa.config import preset
    from swiniqa.checkpoints import write_checkpoint

    bad = write_checkpoint(tmp_path / "run" / "checkpoint_epoch0001", {"w": torch.zeros(300)}, preset("demo"),
                           {"epoch": 1, "val_srcc": 0.5})
    w = Path(bad) / "model.safetensors"
    data = bytearray(w.read_bytes())
    data[-5] ^= 0xFF
    w.write_bytes(bytes(data))
    assert main(["pull", str(tmp_path / "run"), "--dest", str(tmp_path / "dest")]) == 2
    err = capsys.readouterr().err
    assert "model.safetensors differs from the manifest" in err and not (tmp_path / "dest").exists()


def test_cluster_says_when_no_node_can_hold_one_worker(monkeypatch, caplog):
    """On a cluster of 1-CPU nodes a 3-CPU worker fits the totals but no node: say so instead of waiting
    silently (Ray Train waits forever for such a placement group)."""
    import logging

    import ray

    from swiniqa.resources import require_resources

    nodes = [{"Alive": True, "Resources": {"TRAIN_DRIVER": 4.0}}] + \
        [{"Alive": True, "Resources": {"CPU": 1.0}} for _ in range(3)]
    monkeypatch.setattr(ray, "nodes", lambda: nodes)
    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 3.0})
    monkeypatch.setattr(ray, "available_resources", lambda: {"CPU": 3.0})
    with caplog.at_level(logging.WARNING, logger="swiniqa.resources"):
        assert require_resources(1, 3.0, False, cluster=True) is None  # the totals fit: no waiting line
    assert "no node of the cluster can hold one worker (3 CPU); the largest has 1 CPU" in caplog.text
    assert "--set cpus_per_worker=1" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="swiniqa.resources"):
        require_resources(3, 1.0, False, cluster=True)
    assert "no node" not in caplog.text
