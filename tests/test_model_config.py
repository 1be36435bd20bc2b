"""ModelConfig (issue #12): the model is built from the architecture keys alone, checkpoints store them in
``model.json`` and load from that alone; old checkpoints (config.json only) keep loading and scoring the
same; a compiled run's checkpoint evaluates; reusing a run name with another model is one clear error;
``cache_gb`` and the demo-tune preset live in the one config."""

import dataclasses
import json
import logging
import os
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from swiniqa import config as config_mod
from swiniqa.config import MODEL_KEYS, PRESETS, ModelConfig, TrainConfig, preset
from swiniqa.errors import CheckpointError, ConfigError
from swiniqa.models import build_model, unwrap
from swiniqa import checkpoints
from swiniqa import layout
from swiniqa.models import loading

FIXTURE = Path(__file__).parent / "fixtures" / "old_checkpoint_v0"


def _small():
    return preset("demo").replace(target_in=112, target_hidden=(56, 28, 14, 7), hyper_in_channels=56)


def _remanifest(d: Path) -> None:
    """Rewrite the manifest after a deliberate edit (the test is about reading, not integrity)."""
    files = {n: {"size": (d / n).stat().st_size, "sha256": checkpoints.sha256_file(d / n)}
             for n in checkpoints.CHECKPOINT_FILES if n != layout.MANIFEST and (d / n).is_file()}
    (d / layout.MANIFEST).write_text(json.dumps({"format": 1, "files": files}))


def _predict(ckpt, images):
    from swiniqa.evaluation.predict import predict_images

    rows = predict_images(str(ckpt), [str(p) for p in images], device="cpu", progress=False, threads=1)
    return {Path(r["image"]).name: r["score"] for r in rows}


# ------------------------------------------------------------------------------- the config itself
def test_model_config_is_exactly_the_architecture_keys_with_trainconfig_defaults():
    names = [f.name for f in dataclasses.fields(ModelConfig)]
    assert tuple(names) == MODEL_KEYS
    assert set(MODEL_KEYS) == {"backbone", "model_size", "patch_size", "multiscale", "attention", "drop_path",
                               "dropout", "lda_out", "hyper_in_channels", "target_in", "target_hidden",
                               "feature_size"}
    default = TrainConfig()
    assert ModelConfig() == default.model_config()
    with pytest.raises(dataclasses.FrozenInstanceError):
        ModelConfig().patch_size = 96  # type: ignore[misc]
    m = _small().model_config()
    assert m.target_hidden == (56, 28, 14, 7) and m.model_size == "nano" and m.patch_size == 128


def test_model_config_validates_like_the_run_config():
    with pytest.raises(ConfigError, match="patch_size"):
        ModelConfig(model_size="base", patch_size=128)
    with pytest.raises(ConfigError, match="expected int"):
        ModelConfig(patch_size=True)
    with pytest.raises(ConfigError, match="feature_size\\*\\*2"):
        ModelConfig(target_hidden=(112, 50))
    with pytest.raises(ConfigError, match="target_in"):
        preset("demo").replace(target_in=40)  # TrainConfig runs the same architecture checks


def test_from_dict_ignores_unknown_keys_with_a_note(caplog):
    data = {**_small().to_dict(), "a_key_from_the_future": 1}
    with caplog.at_level(logging.INFO, logger="swiniqa"):
        m = ModelConfig.from_dict(data, source="x/model.json")
    assert m == _small().model_config()
    assert any("a_key_from_the_future" in r.getMessage() and "x/model.json" in r.getMessage() for r in caplog.records)


def test_build_model_takes_a_model_config_or_a_run_config():
    cfg = _small()
    torch.manual_seed(0)
    a = build_model(cfg.model_config())
    torch.manual_seed(0)
    b = build_model(cfg)
    assert a.model_config == cfg.model_config() == b.model_config
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb) and all(torch.equal(sa[k], sb[k]) for k in sa)
    with pytest.raises(TypeError):
        build_model(cfg.to_dict())  # type: ignore[arg-type]


# ------------------------------------------------------------------------------- checkpoints
def test_old_checkpoint_fixture_loads_and_scores_the_same():
    expected = json.loads((FIXTURE / "expected_scores.json").read_text())["scores"]
    assert not (FIXTURE / "checkpoint" / layout.MODEL).exists()  # the pre-ModelConfig format
    model, cfg = loading.load_model(FIXTURE / "checkpoint")
    assert (cfg.target_in, cfg.target_hidden, cfg.hyper_in_channels, cfg.model_size, cfg.patch_size) == \
        (112, (56, 28, 14, 7), 56, "nano", 128)
    assert float(model.score_shift) == 50.0 and float(model.score_scale) == 10.0
    got = _predict(FIXTURE / "checkpoint", sorted((FIXTURE / "images").glob("*.png")))
    assert set(got) == set(expected)
    for name, score in expected.items():
        assert got[name] == pytest.approx(score, abs=1e-5), name


def test_old_checkpoint_with_renamed_training_keys_still_loads(tmp_path, caplog):
    ck = tmp_path / "ck"
    shutil.copytree(FIXTURE / "checkpoint", ck)
    data = json.loads((ck / layout.CONFIG).read_text())
    data.pop("rank_weight")
    data["cache_gigabytes"] = 3  # a key this version never had
    (ck / layout.CONFIG).write_text(json.dumps(data))
    with caplog.at_level(logging.INFO, logger="swiniqa"):
        model, cfg = loading.load_model(ck)
    assert cfg.target_in == 112
    assert any("cache_gigabytes" in r.getMessage() for r in caplog.records)
    assert checkpoints.read_config(ck).target_in == 112  # the full run config reads too, unknown key noted


def test_checkpoint_writes_model_json_and_loading_reads_only_it(tmp_path):
    cfg = _small().replace(test_patches=3, seed=5)
    torch.manual_seed(1)
    m = build_model(cfg)
    d = checkpoints.write_checkpoint(tmp_path / "ck", m.state_dict(), cfg, {"epoch": 1, "val_srcc": 0.3})
    saved = json.loads((d / layout.MODEL).read_text())
    assert saved["model"] == cfg.model_config().to_dict()
    assert saved["inference"] == {"dataset": "demo", "resize": None, "resize_short": None, "test_patches": 3,
                                  "seed": 5}
    # A config.json this version could never read (invalid training values) does not matter.
    (d / layout.CONFIG).write_text(json.dumps({"lr": "fast", "model_size": "base", "patch_size": 7}))
    _remanifest(d)
    model, loaded = loading.load_model(d)
    assert loaded.model_config() == cfg.model_config() and (loaded.test_patches, loaded.seed) == (3, 5)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in m.state_dict().items())


def test_compile_prefixed_weights_load(tmp_path):
    """Files written before ``unwrap`` saw through torch.compile carry ``_orig_mod.`` keys."""
    ck = tmp_path / "ck"
    shutil.copytree(FIXTURE / "checkpoint", ck)
    sd = load_file(str(ck / layout.WEIGHTS))
    save_file({f"_orig_mod.{k}": v for k, v in sd.items()}, str(ck / layout.WEIGHTS))
    model, _ = loading.load_model(ck)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in sd.items())
    # and writing a wrapped model's state dict stores plain keys
    d = checkpoints.write_checkpoint(tmp_path / "new", {f"module._orig_mod.{k}": v for k, v in sd.items()},
                              preset("demo").replace(target_in=112, target_hidden=(56, 28, 14, 7),
                                                     hyper_in_channels=56), {"epoch": 1})
    assert sorted(load_file(str(d / layout.WEIGHTS))) == sorted(sd)


def test_unwrap_sees_through_ddp_and_compile():
    m = build_model(_small())

    class FakeDDP(torch.nn.Module):  # DDP's one trait unwrap relies on: the model as ``.module``
        def __init__(self, module):
            super().__init__()
            self.module = module

    assert unwrap(m) is m
    assert unwrap(FakeDDP(m)) is m
    assert unwrap(torch.compile(m)) is m
    assert unwrap(torch.compile(FakeDDP(m))) is m
    assert unwrap(FakeDDP(torch.compile(m))) is m


# ------------------------------------------------------------------------------- resume with another model
def test_resume_with_another_architecture_is_one_clear_error(tmp_path):
    cfg = _small()
    d = checkpoints.write_checkpoint(tmp_path / "run" / "checkpoint_epoch0001", build_model(cfg).state_dict(), cfg,
                              {"epoch": 1, "val_srcc": 0.1})
    checkpoints.check_resume(d, cfg.replace(lr=1e-4))  # training keys may change on resume
    with pytest.raises(CheckpointError) as e:
        checkpoints.check_resume(d, cfg.replace(model_size="micro", multiscale=False))
    msg = str(e.value)
    assert "holds a different model" in msg and "new --name" in msg
    assert "asked now vs saved: model_size 'micro' vs 'nano', multiscale False vs True)" in msg  # lr: not listed
    assert e.value.exit_code == 2 and "\n" not in msg


def test_training_again_under_the_same_name_with_another_model_says_so(tiny_cfg, tmp_path):
    from swiniqa.training.trainer import prepare_splits

    from swiniqa.training.local import train_in_process
    cfg = tiny_cfg.replace(max_images=8, epochs=1, batch_size=8, train_patches=1, test_patches=1)
    splits, _ = prepare_splits(cfg, check=False)
    train_in_process(cfg, str(tmp_path / "run"), splits=splits)
    with pytest.raises(CheckpointError, match="holds a different model .*model_size 'micro' vs 'nano'"):
        train_in_process(cfg.replace(model_size="micro", epochs=2), str(tmp_path / "run"), splits=splits)


# ------------------------------------------------------------------------------- knobs in the one config
def test_cache_gb_sets_or_derives_the_cache_budget(monkeypatch):
    assert preset("demo").replace(cache_gb=1.5).cache_bytes() == int(1.5 * (1 << 30))
    monkeypatch.setattr(config_mod, "available_memory_bytes", lambda: 16 << 30)
    cfg = preset("demo")
    assert cfg.cache_gb == 0
    assert cfg.cache_bytes() == 4 << 30  # a quarter of what is available
    assert cfg.cache_bytes(workers_on_node=4) == 1 << 30  # split among the machine's workers
    with pytest.raises(ConfigError, match="cache_gb"):
        cfg.replace(cache_gb=-1)
    assert 0 < config_mod.available_memory_bytes()


def test_demo_tune_preset_is_visible_in_swiniqa_config(capsys):
    from swiniqa.cli import main

    tuned = preset("demo-tune")
    assert tuned == preset("demo").replace(**config_mod.DEMO_TUNE_OVERRIDES)
    assert PRESETS["demo-tune"]["patch_size"] == 96
    assert main(["config", "--preset", "demo-tune"]) == 0
    out = capsys.readouterr().out
    assert "patch_size: 96" in out and "epochs: 6" in out and "cache_gb: 0.0" in out


# ------------------------------------------------------------------------------- compile=true
def test_a_compiled_run_checkpoint_evaluates(tiny_cfg, tmp_path, monkeypatch):
    """``compile=true`` trains through ``torch.compile``'s wrapper; its checkpoint must load and score.

    The wrapper (``OptimizedModule``, ``_orig_mod.`` keys) is the same whatever compiles the graphs, so the
    graphs are compiled with dynamo's ``eager`` backend here: with Inductor (the default) one forward+backward
    of a nano model at 64 px had not finished its C++ kernel builds after 15 minutes on the shared 2-core
    dev machine. ``SWINIQA_TEST_INDUCTOR=1`` runs it with Inductor (on a machine with cores to spare).
    """
    from swiniqa.data.records import read_dataset
    from swiniqa.evaluation.evaluate import evaluate_dataset
    from swiniqa.training.trainer import prepare_splits

    from swiniqa.training.local import train_in_process
    real_compile = torch.compile
    calls = []

    def compile_eager(model, **kw):
        calls.append(model)
        if os.environ.get("SWINIQA_TEST_INDUCTOR"):
            return real_compile(model, **kw)
        return real_compile(model, backend="eager", **kw)

    monkeypatch.setattr(torch, "compile", compile_eager)
    cfg = tiny_cfg.replace(compile=True, patch_size=64, max_images=8, epochs=1, batch_size=8, train_patches=1,
                           test_patches=1)
    splits, _ = prepare_splits(cfg, check=False)
    train_in_process(cfg, str(tmp_path / "run"), splits=splits)
    assert len(calls) == 1  # the loop really compiled the model
    ck = checkpoints.resolve_checkpoint(tmp_path / "run")
    keys = list(load_file(str(ck / layout.WEIGHTS)))
    assert keys and not [k for k in keys if "_orig_mod" in k or k.startswith("module.")]
    model, loaded = loading.load_model(ck)
    info = read_dataset(cfg.dataset, cfg.data_root)
    info.records = info.records[:4]
    metrics, preds = evaluate_dataset(model, loaded, info, patches=1, batch_size=4, device="cpu", progress=False)
    assert len(preds) == 4 and all(torch.isfinite(torch.tensor(p[2])) for p in preds)
