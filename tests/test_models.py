import pytest
import torch

from swiniqa import TrainConfig, build_model, count_parameters
from swiniqa.models.target import target_forward, target_forward_naive

# Reference architecture's parameter counts (REFERENCE_RESULTS.md), millions.
REFERENCE = [
    ("swin", "tiny", True, True, 29.52),
    ("swin", "small", True, True, 50.84),
    ("swin", "base", True, True, 89.11),
    ("swin", "base", False, False, 88.39),
    ("swin", "base", True, False, 88.85),
    ("swin", "tiny", False, False, 28.98),
    ("resnet50", "base", False, False, 27.38),
]


@pytest.mark.parametrize("backbone,size,ms,att,millions", REFERENCE)
def test_parameter_counts_match_reference(backbone, size, ms, att, millions):
    m = build_model(TrainConfig(backbone=backbone, model_size=size, multiscale=ms, attention=att, pretrained=False))
    assert abs(count_parameters(m) / 1e6 - millions) / millions < 0.01


COMBOS = [(False, False), (True, False), (True, True), (False, True)]


@pytest.mark.core
@pytest.mark.parametrize("ms,att", COMBOS)
def test_every_trainable_parameter_gets_a_gradient(ms, att):
    """A training step must move every parameter of both optimiser groups (backbone and head)."""
    torch.manual_seed(0)
    m = build_model(TrainConfig(model_size="nano", multiscale=ms, attention=att, pretrained=False, patch_size=64))
    m.train()
    x = torch.rand(4, 3, 64, 64)
    y = m(x, raw=True)
    assert y.shape == (4,) and torch.isfinite(y).all()
    # MSE, not L1: an L1 gradient of the output bias is exactly 0 when half the batch is above its target
    torch.nn.functional.mse_loss(y, torch.randn(4)).backward()
    backbone, head = m.param_groups()
    assert backbone and head
    names = {id(p): n for n, p in m.named_parameters()}
    for group, params in (("backbone", backbone), ("head", head)):
        dead = [names[id(p)] for p in params if p.requires_grad and (p.grad is None or not p.grad.abs().sum() > 0)]
        assert not dead, f"{len(dead)} {group} parameter(s) got no gradient, e.g. {dead[:4]}"
    hyper = [p for n, p in m.named_parameters() if n.startswith("head.hyper.")]
    assert len(hyper) > 10  # the hyper-network exists under its checkpoint key prefix
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in hyper)


@pytest.mark.core
@pytest.mark.parametrize("ms,att", [(True, True), (False, False)])
def test_generated_target_weights_drive_the_score_and_its_gradient(ms, att):
    """The hyper-network generates the target MLP's weights per image: changing its parameters must change
    the score, and the analytic gradient along a random direction must equal the finite difference
    (a ``.detach()`` anywhere between the generated weights and the score makes them differ)."""
    torch.manual_seed(1)
    m = build_model(TrainConfig(model_size="nano", multiscale=ms, attention=att, pretrained=False, patch_size=64,
                                dropout=0.0, drop_path=0.0)).double().eval()
    x = torch.rand(3, 3, 64, 64, dtype=torch.float64)
    hyper = {n: p for n, p in m.named_parameters() if n.startswith("head.hyper.")}
    direction = {n: torch.randn_like(p) for n, p in hyper.items()}

    m.zero_grad()
    m(x, raw=True).sum().backward()
    analytic = sum(float((p.grad * direction[n]).sum()) if p.grad is not None else 0.0 for n, p in hyper.items())

    def f(eps: float) -> float:
        with torch.no_grad():
            for n, p in hyper.items():
                p.add_(direction[n], alpha=eps)
            v = float(m(x, raw=True).sum())
            for n, p in hyper.items():
                p.sub_(direction[n], alpha=eps)
            return v

    eps = 1e-6
    numeric = (f(eps) - f(-eps)) / (2 * eps)
    assert abs(numeric) > 1e-3, "the score does not depend on the hyper-network's generated weights"
    assert analytic == pytest.approx(numeric, rel=1e-4, abs=1e-6)
    # and per image: two different images get different target networks, hence different scores
    with torch.no_grad():
        s = m(x, raw=True)
    assert float(s.max() - s.min()) > 1e-6


@pytest.mark.core
def test_uint8_input_equals_float_input():
    m = build_model(TrainConfig(model_size="nano", pretrained=False)).eval()
    x8 = torch.randint(0, 256, (2, 3, 224, 224), dtype=torch.uint8)
    with torch.no_grad():
        torch.testing.assert_close(m(x8), m(x8.float() / 255), rtol=1e-5, atol=1e-5)


def test_resnet_baseline_shapes():
    m = build_model(TrainConfig(backbone="resnet50", multiscale=False, attention=False, pretrained=False)).eval()
    with torch.no_grad():
        assert m(torch.rand(2, 3, 224, 224)).shape == (2,)


@pytest.mark.core
def test_channels_come_from_backbone():
    m = build_model(TrainConfig(model_size="micro", pretrained=False))
    assert m.backbone.channels == [32, 64, 128, 256]
    # multi-scale reduction sees the sum of stage widths
    assert m.head.hyper.reduce[0].in_channels == sum(m.backbone.channels)


@pytest.mark.core
def test_target_network_matches_naive_per_image_loop():
    torch.manual_seed(0)
    B, sizes = 5, [224, 112, 56, 28, 14, 1]
    x = torch.randn(B, sizes[0])
    ws = [torch.randn(B, o, i) * 0.1 for i, o in zip(sizes[:-1], sizes[1:])]
    bs = [torch.randn(B, o) * 0.1 for o in sizes[1:]]
    torch.testing.assert_close(target_forward(x, ws, bs), target_forward_naive(x, ws, bs), rtol=1e-5, atol=1e-6)


@pytest.mark.core
def test_label_scale_is_saved_in_state_dict():
    m = build_model(TrainConfig(model_size="nano", pretrained=False))
    m.set_label_scale(50.0, 10.0)
    sd = m.state_dict()
    assert float(sd["score_shift"]) == 50.0 and float(sd["score_scale"]) == 10.0


@pytest.mark.core
def test_pretrained_custom_size_without_path_is_a_clear_error():
    from swiniqa.errors import ConfigError

    with pytest.raises(ConfigError, match="pretrained_path"):
        build_model(TrainConfig(model_size="nano", pretrained=True))


@pytest.mark.core
def test_pretrained_path_missing_file_is_a_clear_error(tmp_path):
    from swiniqa.errors import ConfigError

    with pytest.raises(ConfigError, match="pretrained_path not found"):
        build_model(TrainConfig(model_size="tiny", pretrained=True, pretrained_path=str(tmp_path / "nope.pth")))


def test_pretrained_path_loads_local_weights(tmp_path):
    import timm
    from safetensors.torch import save_file

    src = timm.create_model("swin_tiny_patch4_window7_224", pretrained=False)
    torch.nn.init.constant_(src.patch_embed.proj.weight, 0.0123)
    save_file(src.state_dict(), str(tmp_path / "w.safetensors"))
    m = build_model(TrainConfig(model_size="tiny", pretrained=True, pretrained_path=str(tmp_path / "w.safetensors")))
    w = dict(m.backbone.net.named_parameters())["patch_embed.proj.weight"]
    assert torch.allclose(w, torch.full_like(w, 0.0123))


def test_pretrained_weights_unavailable_is_a_clear_error(tmp_path):
    """Offline, ImageNet weights cannot be fetched: one message naming pretrained_path, no hub traceback.
    (A subprocess: huggingface_hub reads HF_HUB_OFFLINE when it is first imported.)"""
    import os
    import subprocess
    import sys

    code = ("from swiniqa import TrainConfig, build_model\n"
            "from swiniqa.errors import SwiniqaError\n"
            "for pp in (None, %r):\n"
            "    try:\n"
            "        build_model(TrainConfig(model_size='tiny', pretrained=True, pretrained_path=pp))\n"
            "    except SwiniqaError as e:\n"
            "        print('ERROR', e)\n") % str(tmp_path / "missing.pth")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("ERROR")]
    assert r.returncode == 0 and len(lines) == 2, r.stderr[-1500:]
    assert all("pretrained_path" in ln for ln in lines) and "missing.pth" in lines[1]
