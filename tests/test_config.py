import json

import pytest

from swiniqa.config import TrainConfig, apply_overrides, load_config, parse_set, preset, save_config
from swiniqa.errors import ConfigError

pytestmark = pytest.mark.core


def test_paper_preset_is_the_reference_best_run():
    c = preset("paper")
    assert (c.model_size, c.multiscale, c.attention, c.backbone) == ("base", True, True, "swin")
    assert (c.lr, c.lr_ratio, c.weight_decay, c.batch_size, c.epochs) == (5e-7, 10.0, 2e-4, 32, 10)
    assert (c.drop_path, c.dropout, c.loss, c.color_jitter, c.test_patches, c.patience) == (0.2, 0.3, "l1", False, 20, 3)
    assert c.head_lr == pytest.approx(5e-6)


def test_overrides_parse_by_type():
    c = apply_overrides(TrainConfig(), parse_set(["lr=1e-6", "model_size=small", "attention=false", "resize=384,512",
                                                  "epochs=3", "pretrained_path=none"]))
    assert c.lr == 1e-6 and c.model_size == "small" and c.attention is False and c.resize == (384, 512)
    assert c.epochs == 3 and c.pretrained_path is None


@pytest.mark.parametrize("key,value,match", [
    ("lrr", "1", "unknown config key 'lrr'"),
    ("lr", "fast", "'lr'"),
    ("lr", "-1", "'lr'"),
    ("epochs", "2.5", "'epochs'"),
    ("model_size", "huge", "'model_size'"),
    ("attention", "maybe", "'attention'"),
    ("dropout", "1.5", "'dropout'"),
    ("resize", "100,100", "'resize'"),
])
def test_bad_keys_and_values_name_the_key(key, value, match):
    with pytest.raises(ConfigError, match=match):
        apply_overrides(TrainConfig(), {key: value})


def test_yaml_and_json_round_trip(tmp_path):
    c = preset("demo").replace(lr=3e-4, seed=7)
    save_config(c, tmp_path / "c.json")
    assert load_config(None, str(tmp_path / "c.json")) == c
    (tmp_path / "c.yaml").write_text("lr: 2.0e-4\nmodel_size: nano\n")
    c2 = load_config("demo", str(tmp_path / "c.yaml"), {"seed": "3"})
    assert (c2.lr, c2.model_size, c2.seed, c2.dataset) == (2e-4, "nano", 3, "demo")


def test_bad_config_file_is_named(tmp_path):
    (tmp_path / "bad.yaml").write_text("lr: [unclosed\n")
    with pytest.raises(ConfigError, match="bad.yaml"):
        load_config(None, str(tmp_path / "bad.yaml"))
    with pytest.raises(ConfigError, match="not found"):
        load_config(None, str(tmp_path / "missing.yaml"))
    (tmp_path / "typo.json").write_text(json.dumps({"leraning_rate": 1}))
    with pytest.raises(ConfigError, match="leraning_rate"):
        load_config(None, str(tmp_path / "typo.json"))


def test_schedule_floor_is_relative_and_never_rises():
    from swiniqa.training.optim import lr_factor

    f = [lr_factor(s, 100, 0, 0.01, "cosine") for s in range(101)]
    assert f[0] == pytest.approx(1.0) and f[-1] == pytest.approx(0.01)
    assert all(a >= b for a, b in zip(f, f[1:]))
    w = [lr_factor(s, 100, 10, 0.01, "cosine") for s in range(10)]
    assert w[0] == pytest.approx(0.1) and w[-1] == pytest.approx(1.0)


def test_two_param_groups_keep_their_ratio_through_the_schedule():
    import torch

    from swiniqa import build_model
    from swiniqa.training.optim import make_optimizer, make_schedule

    cfg = preset("demo").replace(model_size="nano", lr=1e-4, lr_ratio=10, epochs=2)
    m = build_model(cfg)
    opt = make_optimizer(*m.param_groups(), cfg, torch.device("cpu"))
    sched = make_schedule(opt, cfg, steps_per_epoch=5)
    for _ in range(7):
        opt.step()
        sched.step()
        lrs = [g["lr"] for g in opt.param_groups]
        assert len(lrs) == 2 and lrs[1] == pytest.approx(10 * lrs[0])
    lda = {id(p) for p in m.head.lda.parameters()}
    assert lda <= {id(p) for p in opt.param_groups[1]["params"]}


def test_derived_cpus_per_worker_fit_on_one_node_each():
    """A worker cannot span nodes: three 1-CPU nodes give a 1-worker run 1 CPU, not the total 3 (a
    placement group no node holds, which Ray Train waited for forever)."""
    from swiniqa.resources import fitting_cpus_per_worker

    assert fitting_cpus_per_worker([2.0], 1) == 2.0  # one machine: all of it
    assert fitting_cpus_per_worker([2.0], 2) == 1.0
    assert fitting_cpus_per_worker([0.0, 1.0, 1.0, 1.0], 1) == 1.0  # 0-CPU head + three 1-CPU nodes
    assert fitting_cpus_per_worker([0.0, 1.0, 1.0, 1.0], 2) == 1.0
    assert fitting_cpus_per_worker([0.0, 8.0, 8.0, 4.0], 2) == 8.0  # total // 2 = 10 fits on no node
    assert fitting_cpus_per_worker([0.0, 8.0, 8.0, 4.0], 3) == 4.0  # at 6 or 5 only the two 8s hold one
    assert fitting_cpus_per_worker([0.0, 8.0, 8.0, 4.0], 5) == 4.0
    assert fitting_cpus_per_worker([1.0], 4) == 1.0  # does not fit at all: the resource check says so
