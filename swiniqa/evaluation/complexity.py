"""Model complexity with one documented method: parameters, MACs, FLOPs, latency, throughput.

    from swiniqa.config import TrainConfig
    from swiniqa.evaluation.complexity import measure_complexity, complexity_table
    from tune_experiments.grids import ablation_cells
    measure_complexity(TrainConfig(model_size="base", pretrained=False))   # params, macs, flops, latency_ms, ...
    print(complexity_table(cells=ablation_cells()))                        # all sizes + the ablation cells

Counting. FLOPs come from ``torch.utils.flop_counter.FlopCounterMode`` on one forward pass of one
``patch_size`` patch (224 for the real Swin sizes): it counts matrix multiplications (mm, addmm, bmm,
baddbmm), convolutions and fused attention kernels, 2 FLOPs per multiply-add, and nothing else
(elementwise ops, softmax, GELU, norms, pooling are not counted). **MACs = FLOPs / 2.** Swin's window
attention (QK^T and attention x V) *is* counted: timm's fused ``scaled_dot_product_attention`` is switched
off while counting, so those products run (and are counted) as explicit bmm — same arithmetic, and the
count does not depend on which attention kernel the device would pick (on CPU the fused kernel would be
silently skipped by the counter). The model is built on PyTorch's ``meta`` device for counting (no memory,
no arithmetic: base takes well under a second), falling back to a real CPU forward if that fails.

This is why the numbers differ from the study's: ptflops (its "GFLOPs" 4.47 / 8.65 / 15.28 G for
tiny/small/base) counts MACs of modules and misses the attention matmuls; FlopCounterMode counts them.

Timing. Latency is the median over ``repeats`` timed forward passes of a batch of 1 (after warm-up);
throughput is ``batch_size`` / the median time of a ``batch_size`` batch. Inputs are float patches
already on the device (no decoding, no host-to-device copy), eval mode, no grad; bf16 autocast and
channels-last on CUDA (as training and evaluation run there), fp32 on CPU.
"""

from __future__ import annotations

import math
import platform
import statistics
import time
from typing import Any, Optional, Sequence

import torch

from swiniqa.config import TrainConfig
from swiniqa.models import build_model, count_parameters

COUNTER = "torch.utils.flop_counter.FlopCounterMode"
COUNTER_NOTE = ("FlopCounterMode counts matmul/addmm/bmm/baddbmm, convolutions and attention (Swin's window-attention "
                "QK^T and AV products included), 2 FLOPs per multiply-add; elementwise ops, softmax, norms and "
                "pooling are not counted. MACs = FLOPs / 2.")

#: The study's numbers (REFERENCE_RESULTS.md): (params M, GMACs per 224 patch or None).
REFERENCE: dict[str, tuple[float, Optional[float]]] = {
    "tiny": (29.52, 4.60), "small": (50.84, 8.86), "base": (89.11, 15.58),
    "C0": (27.38, 4.31), "A2": (88.39, None), "A1": (88.85, None), "E6": (89.11, 15.58),
}

def _model_cfg(cfg: TrainConfig) -> TrainConfig:
    return cfg.replace(pretrained=False, pretrained_path=None)


def _unfuse_attention(model: torch.nn.Module) -> None:
    """Make timm attention modules use explicit matmuls (counted) instead of the fused SDPA kernel."""
    for m in model.modules():
        if hasattr(m, "fused_attn"):
            m.fused_attn = False


def count_flops(cfg: TrainConfig) -> dict[str, Any]:
    """``{"params", "flops", "macs", "by_op", "counted_on"}`` for one ``patch_size`` patch (batch 1)."""
    from torch.utils.flop_counter import FlopCounterMode

    mcfg = _model_cfg(cfg)
    p = cfg.patch_size
    last_err: Optional[BaseException] = None
    for dev in ("meta", "cpu"):
        try:
            with torch.device(dev):
                model = build_model(mcfg).eval()
            _unfuse_attention(model)
            x = torch.rand(1, 3, p, p, device=dev)
            counter = FlopCounterMode(display=False)
            with torch.no_grad(), counter:
                model(x)
            flops = int(counter.get_total_flops())
            by_op = {str(k).replace("aten.", ""): int(v) for k, v in counter.get_flop_counts().get("Global", {}).items()}
            return {"params": int(count_parameters(model)), "flops": flops, "macs": flops // 2, "by_op": by_op,
                    "counted_on": dev}
        except Exception as e:  # noqa: BLE001 - meta can miss a kernel; the CPU forward always works
            last_err = e
    raise RuntimeError(f"cannot count FLOPs: {last_err}")


def device_name(device: torch.device) -> str:
    """GPU name, or the CPU model plus the thread count torch uses."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    name = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    name = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    name = name or platform.processor() or platform.machine() or "CPU"
    return f"{name} ({torch.get_num_threads()} threads)"


def _time(model: torch.nn.Module, x: torch.Tensor, repeats: int, warmup: int, amp: bool) -> list[float]:
    dev = x.device
    sync = (lambda: torch.cuda.synchronize(dev)) if dev.type == "cuda" else (lambda: None)
    times = []
    with torch.no_grad(), torch.autocast(dev.type, dtype=torch.bfloat16, enabled=amp):
        for i in range(warmup + repeats):
            sync()
            t0 = time.perf_counter()
            model(x)
            sync()
            if i >= warmup:
                times.append(time.perf_counter() - t0)
    return times


def measure_latency(cfg: TrainConfig, device: Optional[str] = None, batch_size: int = 32, repeats: int = 10,
                    warmup: Optional[int] = None) -> dict[str, Any]:
    """Median latency of a batch of 1 and throughput at ``batch_size`` (see the module docstring)."""
    dev = torch.device(device) if device else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    cuda = dev.type == "cuda"
    warmup = (10 if cuda else 2) if warmup is None else warmup
    torch.manual_seed(0)
    model = build_model(_model_cfg(cfg)).eval().to(dev)
    if cuda:
        model = model.to(memory_format=torch.channels_last)
    p = cfg.patch_size

    def batch(n: int) -> torch.Tensor:
        x = torch.rand(n, 3, p, p, device=dev)
        return x.contiguous(memory_format=torch.channels_last) if cuda else x

    if cuda:
        torch.cuda.reset_peak_memory_stats(dev)
    t1 = _time(model, batch(1), repeats, warmup, cuda)
    tb = _time(model, batch(batch_size), repeats, max(1, warmup // 2), cuda)
    out = {"latency_ms": statistics.median(t1) * 1e3, "images_per_s": batch_size / statistics.median(tb),
           "batch_size": batch_size, "repeats": repeats, "warmup": warmup,
           "dtype": "bf16 autocast, channels-last" if cuda else "fp32",
           "device": device_name(dev), "device_type": dev.type, "torch": torch.__version__}
    if cuda:
        out["peak_memory_gib"] = torch.cuda.max_memory_allocated(dev) / (1 << 30)
    return out


def model_label(cfg: TrainConfig) -> str:
    if cfg.backbone != "swin":
        return f"HyperIQA {cfg.backbone}"
    parts = [f"Swin-{cfg.model_size}"]
    parts += ["multi-scale"] if cfg.multiscale else ["single-scale"]
    if cfg.attention:
        parts.append("attention")
    return " + ".join(parts)


def measure_complexity(cfg: TrainConfig, device: Optional[str] = None, batch_size: int = 32, repeats: int = 10,
                       latency: bool = True, warmup: Optional[int] = None) -> dict[str, Any]:
    """Params, MACs and FLOPs per patch (FlopCounterMode), and the latency and throughput of ``cfg``'s model.

    Args:
        cfg: the model's config (``pretrained`` is ignored: weights do not change the counts or the speed).
        device: where to time (default: CUDA if present).
        batch_size: the batch throughput is timed at.
        repeats, warmup: timed forward passes and untimed ones before them.
        latency: time the model at all (``False``: counts only, seconds on the ``meta`` device).

    Returns:
        ``params``, ``macs``, ``flops`` (and in M/G units), ``flops_by_op``, ``counter``, the model's label and
        settings, and ``latency_ms`` (median, batch 1), ``images_per_s``, ``device`` (None without latency).

    Raises:
        RuntimeError: FLOPs cannot be counted on ``meta`` nor on the CPU.
    """
    c = count_flops(cfg)
    out: dict[str, Any] = {
        "model": model_label(cfg), "backbone": cfg.backbone, "model_size": cfg.model_size,
        "multiscale": cfg.multiscale, "attention": cfg.attention,
        "params": c["params"], "macs": c["macs"], "flops": c["flops"],
        "params_m": c["params"] / 1e6, "gmacs": c["macs"] / 1e9, "gflops": c["flops"] / 1e9,
        "input": f"1x3x{cfg.patch_size}x{cfg.patch_size}", "counter": COUNTER, "counter_note": COUNTER_NOTE,
        "flops_by_op": c["by_op"], "latency_ms": None, "images_per_s": None, "device": None,
    }
    if latency:
        out.update(measure_latency(cfg, device, batch_size, repeats, warmup))
    return out


def complexity_rows(sizes: Sequence[str] = ("tiny", "small", "base"),
                    cells: Sequence[tuple[str, str, dict[str, Any]]] = (), latency: bool = False,
                    device: Optional[str] = None, batch_size: int = 32, repeats: int = 10,
                    base: Optional[TrainConfig] = None) -> list[dict[str, Any]]:
    """One :func:`measure_complexity` dict per full-model size, then per ``(key, label, overrides)`` of
    ``cells`` (e.g. :func:`tune_experiments.grids.ablation_cells`), plus ``label`` and the study's
    ``reference_params_m``/``reference_gmacs``."""
    base = base or TrainConfig(pretrained=False)
    specs: list[tuple[str, str, dict[str, Any]]] = [
        (s, f"Swin-{s} full model (multi-scale + attention)", dict(model_size=s, multiscale=True, attention=True,
                                                                    backbone="swin")) for s in sizes]
    specs += [(k, label, {"backbone": "swin", **ov}) for k, label, ov in cells]
    rows = []
    for key, label, ov in specs:
        cfg = base.replace(pretrained=False, pretrained_path=None, **ov)
        r = measure_complexity(cfg, device=device, batch_size=batch_size, repeats=repeats, latency=latency)
        ref = REFERENCE.get(key, (None, None))
        r.update({"key": key, "label": label, "reference_params_m": ref[0], "reference_gmacs": ref[1]})
        rows.append(r)
    return rows


def _num(v: Any, fmt: str) -> str:
    return "-" if v is None or (isinstance(v, float) and not math.isfinite(v)) else format(v, fmt)


def complexity_markdown(rows: list[dict[str, Any]]) -> str:
    timed = any(r.get("latency_ms") is not None for r in rows)
    head = "| model | params (M) | study params (M) | GMACs | study GMACs | GFLOPs |"
    sep = "|---|---|---|---|---|---|"
    if timed:
        head += " latency (ms, batch 1) | images/s |"
        sep += "---|---|"
    lines = [head, sep]
    for r in rows:
        line = (f"| {r['label']} | {r['params_m']:.2f} | {_num(r['reference_params_m'], '.2f')} | {r['gmacs']:.2f} | "
                f"{_num(r['reference_gmacs'], '.2f')} | {r['gflops']:.2f} |")
        if timed:
            line += f" {_num(r.get('latency_ms'), '.2f')} | {_num(r.get('images_per_s'), '.1f')} |"
        lines.append(line)
    inp = rows[0]["input"] if rows else "1x3x224x224"
    lines += ["", f"Per {inp} patch. Counter: `{COUNTER}`. {COUNTER_NOTE} The study's GMACs are from its own "
                  "counter (tiny/small/base full model; C0 = original HyperIQA)."]
    if timed:
        r = next(r for r in rows if r.get("latency_ms") is not None)
        lines.append(f"Timing on {r['device']} ({r['dtype']}): median of {r['repeats']} runs after warm-up; "
                     f"throughput at batch {r['batch_size']}; decoding and host-to-device copies not included.")
    return "\n".join(lines) + "\n"


def complexity_table(sizes: Sequence[str] = ("tiny", "small", "base"),
                     cells: Sequence[tuple[str, str, dict[str, Any]]] = (), latency: bool = False,
                     device: Optional[str] = None, batch_size: int = 32, repeats: int = 10) -> str:
    """Markdown table of every size (full model) and cell: params, GMACs, GFLOPs (+ latency).

    Args:
        sizes: Swin sizes of the full model, one row each.
        cells: more rows, ``(key, label, overrides)`` (the ablation study's:
            :func:`tune_experiments.grids.ablation_cells`).
        latency, device, batch_size, repeats: time each row too (see :func:`measure_complexity`).

    Returns:
        The table, with the study's reference numbers beside the measured ones and a note on the counter.
    """
    return complexity_markdown(complexity_rows(sizes, cells, latency, device, batch_size, repeats))


__all__ = ["COUNTER", "REFERENCE", "count_flops", "measure_latency", "measure_complexity",
           "complexity_rows", "complexity_markdown", "complexity_table", "device_name"]
