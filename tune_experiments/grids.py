"""The study grids of the SMART-IQA paper as named, importable definitions.

A :class:`Study` is a list of :class:`Cell` s (config overrides on top of a base config) plus what
to compare and how to plot. Every cell is run once per seed (``--seeds K``); the seed changes the
split, the crops and the initialisation.

    >>> from tune_experiments.grids import STUDIES, LR_STUDY
    >>> [c.name for c in LR_STUDY.cells]
    ['lr5e-06', 'lr3e-06', 'lr1e-06', 'lr5e-07', 'lr1e-07']

:func:`resolve_cells` turns a study into concrete cells for a base config. With CPU stand-ins
(``--preset demo``): the sizes tiny/small/base become nano/micro/mini (:data:`swiniqa.config.CPU_STAND_INS`),
ResNet-50 becomes ResNet-10t, and the learning-rate grid is multiplied so that its centre (1e-6)
sits at the base config's lr (a from-scratch CPU model needs ~1e-3, not 1e-6), keeping the grid's
shape: 5 points with the paper's log spacing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Optional

from swiniqa.config import CPU_STAND_INS, TrainConfig
from swiniqa.errors import ConfigError, did_you_mean

#: The model of the lr/size/augment grids: Swin + multi-scale + attention ("full model", E6).
FULL_MODEL = {"backbone": "swin", "multiscale": True, "attention": True}
#: The lr grid's centre: on CPU stand-ins the grid is scaled so this point lands on the base lr.
LR_CENTRE = 1e-6
#: CPU stand-in for the ResNet-50 baseline (C0).
RESNET_STAND_IN = "resnet10t"


@dataclass(frozen=True)
class Cell:
    """One grid point: a stable name (folders, trial names, table rows), a label and config overrides."""

    name: str
    label: str
    overrides: Mapping[str, Any]
    #: The study's reported (SRCC, PLCC) for this cell (REFERENCE_RESULTS.md), PLCC may be None.
    reference: Optional[tuple[Optional[float], Optional[float]]] = None


@dataclass(frozen=True)
class Study:
    name: str
    title: str
    cells: tuple[Cell, ...]
    #: The config keys that differ between cells.
    varied: tuple[str, ...]
    #: (from, to) cell names whose difference is reported with a CI (ablation steps, augment off->on).
    compare: tuple[tuple[str, str], ...] = ()
    #: Figure kind: "lr" (sensitivity curve), "bars" (ablation bars), "size" (params vs SRCC scatter).
    figure: str = "bars"


def lr_cell_name(lr: float) -> str:
    return f"lr{lr:.3g}"


def _lr_cells(values: tuple[float, ...], refs: tuple[Optional[float], ...]) -> tuple[Cell, ...]:
    return tuple(Cell(lr_cell_name(v), f"lr {v:.3g}", {**FULL_MODEL, "lr": v}, (r, None))
                 for v, r in zip(values, refs))


#: Learning rate (full model, base): 5e-6, 3e-6, 1e-6, 5e-7, 1e-7.
LR_VALUES = (5e-6, 3e-6, 1e-6, 5e-7, 1e-7)
LR_STUDY = Study(
    name="lr", title="Learning-rate sensitivity (full model)",
    cells=_lr_cells(LR_VALUES, (0.9354, 0.9364, 0.9374, 0.9378, 0.9375)),
    varied=("lr",), figure="lr")

#: Model size (full model): tiny, small, base.
SIZE_STUDY = Study(
    name="size", title="Model size (full model)",
    cells=(Cell("tiny", "Swin-T", {**FULL_MODEL, "model_size": "tiny"}, (0.9249, 0.9360)),
           Cell("small", "Swin-S", {**FULL_MODEL, "model_size": "small"}, (0.9338, 0.9455)),
           Cell("base", "Swin-B", {**FULL_MODEL, "model_size": "base"}, (0.9378, 0.9485))),
    varied=("model_size",), compare=(("tiny", "small"), ("small", "base")), figure="size")

#: Ablation: C0 ResNet-50 HyperIQA -> A2 Swin single-scale -> A1 + multi-scale -> E6 + attention.
ABLATION_STUDY = Study(
    name="ablation", title="Ablation (C0 -> A2 -> A1 -> E6)",
    cells=(Cell("C0", "C0 ResNet-50 HyperIQA", {"backbone": "resnet50", "multiscale": False, "attention": False},
                (0.907, 0.918)),
           Cell("A2", "A2 Swin single-scale", {"backbone": "swin", "multiscale": False, "attention": False},
                (0.9338, 0.9438)),
           Cell("A1", "A1 + multi-scale", {"backbone": "swin", "multiscale": True, "attention": False},
                (0.9353, 0.9458)),
           Cell("E6", "E6 + attention", {"backbone": "swin", "multiscale": True, "attention": True},
                (0.9378, 0.9485))),
    varied=("backbone", "multiscale", "attention"), compare=(("C0", "A2"), ("A2", "A1"), ("A1", "E6")),
    figure="bars")

#: Augmentation (full model): colour jitter off / on.
AUGMENT_STUDY = Study(
    name="augment", title="Colour-jitter augmentation (full model)",
    cells=(Cell("jitter-off", "colour jitter off", {**FULL_MODEL, "color_jitter": False}, (0.9378, None)),
           Cell("jitter-on", "colour jitter on", {**FULL_MODEL, "color_jitter": True}, (0.9343, None))),
    varied=("color_jitter",), compare=(("jitter-off", "jitter-on"),), figure="bars")

STUDIES: dict[str, Study] = {s.name: s for s in (LR_STUDY, SIZE_STUDY, ABLATION_STUDY, AUGMENT_STUDY)}


def ablation_cells() -> list[tuple[str, str, dict[str, Any]]]:
    """``(key, label, overrides)`` of :data:`ABLATION_STUDY`'s cells at the size the study measured them
    (Swin-B; C0 is ResNet-50): the rows ``swiniqa complexity --table`` adds to the full-model sizes."""
    out = []
    for c in ABLATION_STUDY.cells:
        swin = c.overrides.get("backbone", "swin") == "swin"
        ov = {"model_size": "base", **c.overrides} if swin else dict(c.overrides)
        out.append((c.name, f"{c.label} (Swin-B)" if swin else c.label, ov))
    return out


def get_study(name: str) -> Study:
    if name not in STUDIES:
        hint = did_you_mean(name, STUDIES)
        raise ConfigError(f"unknown study '{name}'; {hint + ' ' if hint else ''}choose one of {', '.join(STUDIES)}")
    return STUDIES[name]


def uses_cpu_stand_ins(cfg: TrainConfig) -> bool:
    """True for demo/CPU studies: the demo dataset or a CPU-size Swin as the base model."""
    return cfg.dataset == "demo" or cfg.model_size in CPU_STAND_INS.values()


@dataclass(frozen=True)
class ResolvedCell(Cell):
    """A cell made concrete for one base config: the overrides actually applied."""

    def config(self, base: TrainConfig, seed: int) -> TrainConfig:
        return base.replace(**self.overrides, seed=seed)


def resolve_cells(study: Study, base: TrainConfig, cpu_stand_ins: Optional[bool] = None
                  ) -> tuple[list[ResolvedCell], list[str]]:
    """Concrete cells for ``base`` and notes (one line each) on what was substituted.

    ``cpu_stand_ins`` None = :func:`uses_cpu_stand_ins` (base). Reference numbers are dropped when
    stand-ins are used (they belong to the paper's models).
    """
    demo = uses_cpu_stand_ins(base) if cpu_stand_ins is None else cpu_stand_ins
    notes: list[str] = []
    factor = 1.0
    if demo and study.name == "lr":
        factor = base.lr / LR_CENTRE
        notes.append(f"lr grid scaled x{factor:g} for CPU stand-ins (paper grid {', '.join(f'{v:g}' for v in LR_VALUES)}; "
                     f"its centre {LR_CENTRE:g} moved to the base lr {base.lr:g}, same 5-point log spacing)")
    out: list[ResolvedCell] = []
    for c in study.cells:
        ov = dict(c.overrides)
        name, label = c.name, c.label
        if demo:
            if "lr" in ov:
                ov["lr"] = float(f"{ov['lr'] * factor:.6g}")
                name, label = lr_cell_name(ov["lr"]), f"lr {ov['lr']:.3g} (paper {c.overrides['lr']:g})"
            if ov.get("model_size") in CPU_STAND_INS:
                ov["model_size"] = CPU_STAND_INS[ov["model_size"]]
                label = f"{c.label} (CPU stand-in: {ov['model_size']})"
            if ov.get("backbone") == "resnet50":
                ov["backbone"] = RESNET_STAND_IN
                label = f"{c.label} (CPU stand-in: {RESNET_STAND_IN})"
        out.append(ResolvedCell(name, label, ov, None if demo else c.reference))
    if demo:
        if study.name == "size":
            notes.append("CPU stand-ins: " + ", ".join(f"{k} -> {v}" for k, v in CPU_STAND_INS.items()))
        elif study.name == "ablation":
            notes.append(f"CPU stand-ins: resnet50 -> {RESNET_STAND_IN}; Swin cells use model_size {base.model_size}")
        else:
            notes.append(f"CPU stand-in for the full model: Swin model_size {base.model_size}")
    return out, notes


def trial_specs(study: Study, base: TrainConfig, seeds: list[int], cpu_stand_ins: Optional[bool] = None
                ) -> tuple[list[dict[str, Any]], list[str]]:
    """Every (cell, seed) of a study, seed-major (all cells of seed 0 first), as full config dicts
    with ``study``, ``cell`` and ``trial`` (run name) added: what ``--dry-run`` prints."""
    cells, notes = resolve_cells(study, base, cpu_stand_ins)
    specs = []
    for seed in seeds:
        for c in cells:
            d = c.config(base, seed).to_dict()
            specs.append({"study": study.name, "cell": c.name, "label": c.label, "trial": run_name(c.name, seed),
                          **d})
    return specs, notes


def run_name(cell: str, seed: int) -> str:
    """The stable name of a (cell, seed) trial's Train run, TensorBoard folder and Tune trial folder."""
    return f"{cell}-seed{seed}"


__all__ = ["Cell", "Study", "ResolvedCell", "STUDIES", "LR_STUDY", "SIZE_STUDY", "ABLATION_STUDY", "AUGMENT_STUDY",
           "LR_VALUES", "LR_CENTRE", "FULL_MODEL", "get_study", "resolve_cells", "trial_specs",
           "run_name", "uses_cpu_stand_ins", "lr_cell_name", "ablation_cells"]
