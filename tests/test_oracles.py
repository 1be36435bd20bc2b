"""Every number the README promises a user, checked against an independent computation (tests/oracles.py):
per-image scores as the mean of the model's raw outputs on crops cut here, metrics from scipy directly,
t-intervals from scipy.stats, the chosen checkpoint/trial by sorting the metrics here. No code under test
computes an expected value. Nano models, a few images; the `score` test uses the session's Ray."""

from __future__ import annotations

import csv
import json
import math
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
import oracles  # noqa: E402
from fixtures_datasets import make_image  # noqa: E402

from swiniqa.config import TrainConfig  # noqa: E402
from swiniqa.models import build_model  # noqa: E402

PATCH = 64


def _cfg(**kw) -> TrainConfig:
    base = dict(model_size="nano", pretrained=False, patch_size=PATCH, resize=None, test_patches=4, dropout=0.0,
                drop_path=0.0, dataset="csv", seed=3)
    base.update(kw)
    return TrainConfig(**base)


def _model(cfg: TrainConfig, seed: int = 0, shift: float = 50.0, scale: float = 20.0):
    torch.manual_seed(seed)
    m = build_model(cfg)
    m.set_label_scale(shift, scale)
    return m.eval()


def _write_ckpt(d: Path, cfg: TrainConfig, seed: int = 0, val_srcc: float = 0.5) -> Path:
    return oracles.write_checkpoint(d, _model(cfg, seed).state_dict(), cfg, {"val_srcc": val_srcc, "epoch": 1})


def _images(folder: Path, n: int, start: int = 0) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        p = folder / f"img{start + i:02d}.png"
        make_image(300 + start + i, 0.1 + 0.8 * i / max(1, n - 1), size=(150 + 10 * i, 110)).save(p)
        out.append(str(p))
    return out


def _sensitive(model, paths, n, seed_of) -> None:
    """The test can see the averaging: each image's crops differ by far more than the tolerance."""
    fwd = oracles.torch_forward(model)
    for i, p in enumerate(paths):
        c = oracles.crop_outputs(fwd, oracles.decoded(p, PATCH), n, PATCH, seed_of(i, p))
        assert c.max() - c.min() > 50 * oracles.ATOL, (p, c)


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # conftest: one intra-op thread per test here


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    return _write_ckpt(tmp_path_factory.mktemp("oracle") / "checkpoint_epoch0001", _cfg())


# ---------------------------------------------------------------------------------------------- predict
@pytest.mark.core
def test_predict_score_is_the_mean_of_the_images_distinct_crops(tmp_path, ckpt, capsys):
    """README (eval/predict, score/serve): an image's score is the mean of `test_patches` distinct fixed crops,
    seeded by the file's bytes; rows come in input order, an unreadable/missing input gets no score.
    Library and CLI; several images' crops share a forward pass (batch 8 = 2 images of 4 crops)."""
    from swiniqa.cli import main
    from swiniqa.evaluation.predict import predict_images

    model, cfg = oracles.load_model(ckpt)
    paths = _images(tmp_path / "in", 5)
    broken = tmp_path / "in" / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not an image")
    inputs = [paths[3], str(broken), paths[0], paths[4], paths[1], paths[2]]
    good = [p for p in inputs if p != str(broken)]
    _sensitive(model, good, 4, lambda i, p: oracles.content_seed_by_hand(cfg.seed, p))
    want = dict(zip(good, oracles.file_scores(model, good, 4, PATCH, cfg.seed)))

    rows = predict_images(ckpt, inputs + [str(tmp_path / "missing.png")], batch_size=8, progress=False,
                          device="cpu", threads=1)
    assert [r["image"] for r in rows] == inputs + [str(tmp_path / "missing.png")]
    for r in rows:
        if r["image"] in want:
            assert r["score"] == pytest.approx(want[r["image"]], abs=oracles.ATOL), r
        else:
            assert r["score"] is None and r["error"]

    rc = main(["predict", "--checkpoint", str(ckpt), *inputs, "--json", "--quiet", "--batch-size", "4",
               "--device", "cpu"])
    s = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert rc == 1  # one unreadable file
    assert [p["image"] for p in s["predictions"]] == good
    np.testing.assert_allclose([p["score"] for p in s["predictions"]], [want[p] for p in good], atol=oracles.ATOL,
                               rtol=0)


# ---------------------------------------------------------------------------------------------- eval
def _csv_dataset(root: Path, n: int) -> tuple[list[str], list[float]]:
    paths = _images(root / "images", n)
    mos = [round(10 + 80 * ((i * 7) % n) / n, 3) for i in range(n)]  # not monotone in the file order
    with open(root / "labels.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image", "mos"])
        for p, m in zip(paths, mos):
            w.writerow([os.path.basename(p), m])
    return paths, mos


@pytest.mark.core
def test_eval_numbers_are_the_crop_means_and_scipys_metrics_of_the_best_checkpoint(tmp_path, capsys):
    """README `eval`: every image's score is the mean of N distinct fixed crops; SRCC/PLCC/KRCC/RMSE of those
    scores against the labels; a run folder means its best checkpoint by validation SRCC (here the second of
    three, written with other weights than the others)."""
    from swiniqa.cli import main

    paths, mos = _csv_dataset(tmp_path / "data", 9)
    cfg = _cfg()
    run = tmp_path / "run"
    for epoch, (seed, val) in enumerate([(1, 0.40), (2, 0.90), (3, 0.60)], start=1):
        _write_ckpt(run / f"checkpoint_epoch{epoch:04d}", cfg, seed=seed, val_srcc=val)
    best = max([(0.40, 1), (0.90, 2), (0.60, 3)])[1]  # by validation SRCC, sorted here
    model = _model(cfg, seed=best)
    _sensitive(model, paths, 4, lambda i, p: oracles.index_seed_by_hand(cfg.seed, i))
    want = oracles.record_scores(model, paths, 4, PATCH, cfg.seed)
    preds = tmp_path / "preds.csv"
    rc = main(["eval", "--checkpoint", str(run), "--dataset", "csv", "--root", str(tmp_path / "data"),
               "--predictions", str(preds), "--json", "--quiet", "--device", "cpu", "--batch-size", "8"])
    s = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert rc == 0
    with open(preds, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["image"] for r in rows] == [f"images/{os.path.basename(p)}" for p in paths]  # label-file order
    assert [float(r["mos"]) for r in rows] == mos
    np.testing.assert_allclose([float(r["pred"]) for r in rows], want, atol=oracles.ATOL, rtol=0)
    ref = oracles.scipy_metrics(want, mos)
    for k in ("srcc", "plcc", "krcc"):
        assert s[k] == pytest.approx(ref[k], abs=1e-4), k
    assert s["rmse"] == pytest.approx(ref["rmse"], abs=1e-3)
    assert s["n_images"] == len(paths)


@pytest.mark.core
def test_validation_metrics_are_scipys_on_the_crop_means(tmp_path):
    """The loop's per-epoch validation (and the final test): `evaluate_split` = scipy's SRCC/PLCC/KRCC of the
    mean over each record's N distinct crops, seeded by the run seed and the record's position."""
    from swiniqa.data.loader import ImageCache
    from swiniqa.data.records import Record
    from swiniqa.evaluation.inference import evaluate_split

    cfg = _cfg(test_patches=3, batch_size=4, seed=11)
    model = _model(cfg, seed=4)
    paths = _images(tmp_path, 7)
    mos = [float(v) for v in (30, 70, 10, 90, 50, 20, 60)]
    records = [Record(p, m, str(i)) for i, (p, m) in enumerate(zip(paths, mos))]
    _sensitive(model, paths, 3, lambda i, p: oracles.index_seed_by_hand(cfg.seed, i))
    want = oracles.record_scores(model, paths, 3, PATCH, cfg.seed)
    metrics, pred = evaluate_split(model, records, cfg, ImageCache(None, None, PATCH, budget_bytes=0),
                                   torch.device("cpu"))
    np.testing.assert_allclose(pred, want, atol=oracles.ATOL, rtol=0)
    ref = oracles.scipy_metrics(want, mos)
    for k in ("srcc", "plcc", "krcc"):
        assert metrics[k] == pytest.approx(ref[k], abs=1e-6), k
    assert metrics["n_images"] == 7


# ---------------------------------------------------------------------------------------------- pull
def _ckpt_with(d: Path, value_seed: int, **metrics) -> str:
    """A checkpoint folder whose weights are unique to it (so a wrong pick shows in the bytes)."""
    from swiniqa.config import preset

    oracles.write_checkpoint(d, {"w": torch.full((4,), float(value_seed))}, preset("demo"), {"epoch": 1, **metrics})
    return str(d)


def _sha(p) -> str:
    import hashlib

    with open(p, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


@pytest.mark.core
def test_pull_picks_what_sorting_the_recorded_metrics_picks(tmp_path):
    """README `pull`: the best trial(s) by a recorded metric (`--metric`, `--mode`), best first; the copied
    weights are the chosen checkpoint's. Expected order: the metrics sorted here."""
    from swiniqa.pull import pull
    from swiniqa.layout import WEIGHTS

    rng = np.random.default_rng(7)
    srcc = rng.permutation(np.linspace(0.1, 0.9, 7)).round(4)
    loss = rng.permutation(np.linspace(0.2, 1.4, 7)).round(4)
    runs = tmp_path / "runs"
    paths = [_ckpt_with(runs / f"r{i % 3}" / f"checkpoint_epoch{i + 1:04d}", i, val_srcc=float(srcc[i]),
                        val_loss=float(loss[i])) for i in range(7)]
    for metric, mode, values in (("val_srcc", "max", srcc), ("val_loss", "min", loss)):
        order = sorted(range(7), key=lambda i: values[i], reverse=(mode == "max"))[:4]
        res = pull(str(runs), str(tmp_path / f"out-{metric}"), metric=metric, mode=mode, top=4)
        assert [c["source"] for c in res["checkpoints"]] == [paths[i] for i in order]
        assert [c["value"] for c in res["checkpoints"]] == pytest.approx([float(values[i]) for i in order])
        assert [c["rank"] for c in res["checkpoints"]] == [1, 2, 3, 4]
        for c, i in zip(res["checkpoints"], order):
            assert _sha(os.path.join(c["checkpoint"], WEIGHTS)) == _sha(os.path.join(paths[i], WEIGHTS))
    assert res["srcc"] == pytest.approx(float(srcc[order[0]]))  # `srcc` of the best copy, whatever the metric

    # An experiment: the trials' rows in results.json rank them (a trial's best, not its last epoch's metrics.json).
    exp = tmp_path / "exp"
    rows, best_of = [], {}
    for t in range(5):
        ck = _ckpt_with(exp / "train" / f"c{t}-seed0" / "checkpoint_epoch0002", 100 + t, val_srcc=0.0)
        v = float(rng.uniform(0.2, 0.8))
        best_of[ck] = v
        rows.append({"trial_id": f"t{t}", "run": f"c{t}-seed0", "cell": f"c{t}", "seed": 0, "config": {},
                     "val_srcc": v, "checkpoint": ck, "status": "completed", "best_epoch": 2})
    (exp / "results.json").write_text(json.dumps(rows))
    res = pull(str(exp), str(tmp_path / "out-exp"), top=3)
    want = sorted(best_of, key=best_of.get, reverse=True)[:3]
    assert [c["source"] for c in res["checkpoints"]] == want
    assert res["srcc"] == pytest.approx(best_of[want[0]])


# ---------------------------------------------------------------------------------------------- tune / report
def _t_interval(x):
    """mean, sample std and the 95 % t-interval of the mean, from scipy.stats directly."""
    from scipy import stats

    x = np.asarray(x, np.float64)
    lo, hi = stats.t.interval(0.95, len(x) - 1, loc=x.mean(), scale=stats.sem(x))
    return x.mean(), x.std(ddof=1), lo, hi


def _fake(tmp_path, values, study=None):
    from test_aggregate import _fake_experiment  # the experiment folder as Tune leaves it (no Ray)

    return _fake_experiment(tmp_path, values, study)


@pytest.mark.core
def test_report_table_rows_intervals_and_best_trial_against_scipy(tmp_path, capsys):
    """README `tune`/`report`: `table_<study>.csv|md|tex` has a row per cell in the study's order with SRCC/PLCC
    mean, std and 95 % t-interval over seeds; `--json` `best` is the trial with the highest validation SRCC."""
    import pandas as pd

    from swiniqa.cli import main
    from tune_experiments.grids import STUDIES

    rng = np.random.default_rng(3)
    cells = ["lr0.005", "lr0.003", "lr0.001", "lr0.0005", "lr0.0001"]
    values = {c: {s: (float(rng.uniform(0.3, 0.9)), float(rng.uniform(0.3, 0.9))) for s in range(3)} for c in cells}
    exp = _fake(tmp_path, {c: values[c] for c in reversed(cells)}, STUDIES["lr"])  # written in reverse order
    rc = main(["report", str(exp), "--json", "--no-plots"])
    s = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert rc == 0
    table = pd.read_csv(s["tables"]["csv"])
    assert list(table["cell"]) == cells  # the study's order, not the folders'
    md = open(s["tables"]["md"]).read()
    tex = open(s["tables"]["tex"]).read()
    for c in cells:
        row = table.set_index("cell").loc[c]
        for metric, pick in (("test_srcc", lambda v: v[1]), ("test_plcc", lambda v: v[1] + 0.01),
                             ("val_srcc", lambda v: v[0])):
            mean, std, lo, hi = _t_interval([pick(values[c][s_]) for s_ in range(3)])
            got = [row[f"{metric}_{k}"] for k in ("mean", "std", "ci95_lo", "ci95_hi")]
            assert got == pytest.approx([mean, std, lo, hi], rel=1e-5, abs=1e-6), (c, metric)
        mean, std, lo, hi = _t_interval([values[c][s_][1] for s_ in range(3)])
        assert f"{mean:.4f} ± {std:.4f} [{lo:.4f}, {hi:.4f}]" in md  # the Markdown cell of test SRCC
        assert f"{mean:.4f} $\\pm$ {(hi - lo) / 2:.4f}" in tex
    flat = [(v[0], c, s_) for c in cells for s_, v in values[c].items()]
    val, cell, seed = max(flat)
    assert (s["best"]["cell"], s["best"]["seed"]) == (cell, seed)
    assert s["best"]["metrics"]["val_srcc"] == pytest.approx(val)
    assert s["best"]["metrics"]["test_srcc"] == pytest.approx(values[cell][seed][1])


@pytest.mark.core
@pytest.mark.parametrize("seeds_on", ["paired", "welch"])
def test_report_differences_and_verdicts_against_scipys_t_tests(tmp_path, seeds_on):
    """README `report`: `differences_<study>.csv`: each step's difference with its 95 % CI, paired by seed when
    the seeds match (scipy's ttest_rel), else Welch (scipy's ttest_ind, unequal variances); "within noise" when
    the CI contains 0."""
    import pandas as pd
    from scipy import stats

    from tune_experiments.aggregate import build_report

    off = {0: (0.80, 0.900), 1: (0.81, 0.905), 2: (0.79, 0.898), 3: (0.80, 0.910)}
    on_seeds = [0, 1, 2, 3] if seeds_on == "paired" else [4, 5, 6]
    gain = [0.020, 0.024, 0.018, 0.025][:len(on_seeds)]  # a clear improvement in test SRCC
    on = {s: (0.80 + 0.003 * i, off[i][1] + g) for i, (s, g) in enumerate(zip(on_seeds, gain))}
    exp = _fake(tmp_path, {"jitter-off": off, "jitter-on": on})
    s = build_report(str(exp), plots=False)
    diffs = pd.read_csv(s["tables"]["diffs"])
    d = diffs[diffs["metric"] == "test_srcc"].iloc[0]
    a = np.array([off[k][1] for k in sorted(off)])
    b = np.array([on[k][1] for k in sorted(on)])
    if seeds_on == "paired":
        t = stats.ttest_rel(b, a)
        diff = float(np.mean(b - a))
    else:
        t = stats.ttest_ind(b, a, equal_var=False)
        diff = float(b.mean() - a.mean())
    ci = t.confidence_interval(0.95)
    assert (d["from"], d["to"]) == ("jitter-off", "jitter-on")
    assert [d["diff"], d["ci95_lo"], d["ci95_hi"]] == pytest.approx([diff, ci.low, ci.high], rel=1e-5)
    assert d["verdict"] == ("within noise" if ci.low <= 0 <= ci.high else "higher")
    v = diffs[diffs["metric"] == "val_srcc"].iloc[0]  # validation SRCC: no clear difference
    va = np.array([off[k][0] for k in sorted(off)])
    vb = np.array([on[k][0] for k in sorted(on)])
    vt = stats.ttest_rel(vb, va) if seeds_on == "paired" else stats.ttest_ind(vb, va, equal_var=False)
    vci = vt.confidence_interval(0.95)
    assert [v["ci95_lo"], v["ci95_hi"]] == pytest.approx([vci.low, vci.high], rel=1e-5)
    assert v["verdict"] == ("within noise" if vci.low <= 0 <= vci.high else "higher" if vci.low > 0 else "lower")


# ---------------------------------------------------------------------------------------------- splits
def _records(groups: int, per_group: int = 3):
    from swiniqa.data.records import Record

    return [Record(f"/x/g{g}_{k}.png", float(g + k), f"g{g}") for g in range(groups) for k in range(per_group)]


@pytest.mark.core
@pytest.mark.parametrize("groups,val,test", [(10, 0.05, 0.05), (20, 0.26, 0.14), (13, 0.22, 0.15), (7, 0.3, 0.0),
                                             (2, 0.5, 0.0), (9, 0.0, 0.3)])
def test_split_sizes_are_the_fractions_of_content_groups(groups, val, test):
    """README (train, data): split by content, fractions of the content groups; each non-zero fraction gets at
    least one group and a zero fraction none (the demo's 13 photos: 22 % val, 15 % test -> 3 and 2 photos)."""
    from swiniqa.data.splits import split_records

    parts = split_records(_records(groups), seed=1, val_fraction=val, test_fraction=test)
    n_groups = {k: len({r.group for r in v}) for k, v in parts.items()}
    want_test = max(1, int(math.floor(test * groups + 0.5))) if test > 0 else 0
    want_val = max(1, int(math.floor(val * groups + 0.5))) if val > 0 else 0
    assert (n_groups["val"], n_groups["test"]) == (want_val, want_test)
    assert n_groups["train"] == groups - want_val - want_test
    assert sum(len(v) for v in parts.values()) == groups * 3
    for k in parts:  # whole groups only
        for g in {r.group for r in parts[k]}:
            assert sum(r.group == g for r in parts[k]) == 3


@pytest.mark.core
def test_an_official_split_without_a_validation_part_falls_back_to_a_content_split():
    """A release split that names no validation images cannot select a checkpoint: the seeded content split is
    used instead (so validation is never empty)."""
    from swiniqa.data.records import DatasetInfo
    from swiniqa.data.splits import split_dataset

    recs = _records(6)
    official = {r.path: ("train" if r.group in ("g0", "g1", "g2", "g3") else "test") for r in recs}
    info = DatasetInfo(name="x", root="/x", records=recs, official_split=official)
    parts = split_dataset(info, seed=0, val_fraction=0.2, test_fraction=0.2)
    assert parts["val"] and parts["test"] and parts["train"]
    assert {r.group for r in parts["val"]}.isdisjoint({r.group for r in parts["train"]})


# ---------------------------------------------------------------------------------------------- score (Ray Data)
def test_score_rows_are_the_crop_means_in_input_order(ray_session, tmp_path, ckpt):
    """README `score`: `image, score, error` in input order (a folder's files sorted in its place, a list
    file's lines in theirs; a missing or unreadable file keeps its place with an error and no score); each
    score is the mean of the image's distinct crops seeded by its bytes, computed here by hand."""
    import pandas as pd

    from swiniqa.serving.score import score_collection

    model, cfg = oracles.load_model(ckpt)
    files = _images(tmp_path / "pics", 3)
    folder = _images(tmp_path / "folder", 2, start=10)
    listed = tmp_path / "list.txt"
    extra = _images(tmp_path / "more", 1, start=20)[0]
    listed.write_text(f"{extra}\n")
    broken = tmp_path / "pics" / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not an image")
    missing = str(tmp_path / "pics" / "missing.png")
    inputs = [files[2], missing, str(tmp_path / "folder"), files[0], str(broken), str(listed), files[1]]
    expected_order = [files[2], missing, *folder, files[0], str(broken), extra, files[1]]
    out = tmp_path / "scores.csv"
    res = score_collection(str(ckpt), inputs, str(out), progress=False, actors=1, cpus_per_actor=1)
    df = pd.read_csv(out)
    assert [os.path.normpath(p) for p in df["image"]] == [os.path.normpath(p) for p in expected_order]
    good = [p for p in expected_order if p not in (missing, str(broken))]
    want = dict(zip(good, oracles.file_scores(model, good, cfg.test_patches, PATCH, cfg.seed)))
    for image, score, error in zip(df["image"], df["score"], df["error"]):
        key = next(p for p in expected_order if os.path.normpath(p) == os.path.normpath(image))
        if key in want:
            assert score == pytest.approx(want[key], abs=oracles.ATOL), image
        else:
            assert math.isnan(score) and isinstance(error, str) and error, image
    assert res["scored"] == len(good) and len(res["errors"]) == 2


# ---------------------------------------------------------------------------------------------- train
def test_train_summary_is_scipys_metrics_of_the_weights_it_names(tmp_path):
    """README `train`: validation every epoch (mean of N distinct fixed crops per image), the best checkpoint is
    the first epoch reaching the best val SRCC, and after the last epoch the weights selected on validation are
    evaluated once on the test split. Each figure is recomputed here from the checkpoint folder's weights: crop
    means by hand, SRCC/PLCC by scipy, the best epoch by sorting the epochs' figures."""
    from learnable_data import noise_config, write_noise_dataset
    from safetensors.torch import load_file

    from swiniqa.data.records import Record
    from swiniqa.layout import WEIGHTS
    from swiniqa.training.local import train_in_process

    root, labels = write_noise_dataset(tmp_path / "data", n=48, size=80)
    names = sorted(labels)
    recs = [Record(os.path.join(root, n), labels[n], n) for n in names]
    splits = {"train": recs[:24], "val": recs[24:36], "test": recs[36:]}
    cfg = noise_config(root, epochs=4, lr=3e-3, test_patches=2, patience=100)
    run = tmp_path / "run"
    final, reports = train_in_process(cfg, str(run), splits=splits)
    assert [r["epoch"] for r in reports] == [1, 2, 3, 4]

    def weights_of(epoch):
        m = build_model(cfg)
        m.load_state_dict(load_file(str(run / f"checkpoint_epoch{epoch:04d}" / WEIGHTS)))
        return m.eval()

    def figures(model, part):
        pred = oracles.record_scores(model, [r.path for r in splits[part]], cfg.test_patches, cfg.patch_size, cfg.seed)
        return oracles.scipy_metrics(pred, [r.score for r in splits[part]])

    val = [figures(weights_of(e), "val") for e in (1, 2, 3, 4)]
    for r, v in zip(reports, val):
        assert (r["val_srcc"], r["val_plcc"]) == (pytest.approx(v["srcc"], abs=1e-6), pytest.approx(v["plcc"], abs=1e-4))
    srccs = [v["srcc"] for v in val]
    best = srccs.index(max(srccs)) + 1  # the first epoch reaching the best
    assert final["best_epoch"] == best and final["best_val_srcc"] == pytest.approx(max(srccs), abs=1e-6)
    assert final["best_val_plcc"] == pytest.approx(val[best - 1]["plcc"], abs=1e-4)
    assert best < 4, srccs  # the last epoch is not the best, so "the selected weights" is a real choice here
    test = figures(weights_of(best), "test")
    assert final["test_srcc"] == pytest.approx(test["srcc"], abs=1e-6)
    assert final["test_plcc"] == pytest.approx(test["plcc"], abs=1e-4)


# ---------------------------------------------------------------------------------------------- lr schedule
@pytest.mark.core
def test_both_groups_lr_follow_a_per_step_cosine_to_a_floor_relative_to_their_base():
    """README `train` (TensorBoard `lr_backbone`, `lr_head`): backbone at `lr`, head at `lr x lr_ratio`, linear
    warm-up, then a per-step cosine down to `min_lr_ratio x` each group's own base lr (both groups every step)."""
    from swiniqa.training.optim import make_optimizer, make_schedule

    cfg = _cfg(lr=2e-4, lr_ratio=10.0, min_lr_ratio=0.05, epochs=5, warmup_epochs=1, schedule="cosine")
    params = [torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(2))]
    opt = make_optimizer([params[0]], [params[1]], cfg, torch.device("cpu"))
    steps_per_epoch = 4
    sched = make_schedule(opt, cfg, steps_per_epoch)
    total, warm = 5 * steps_per_epoch, steps_per_epoch
    seen = []
    for step in range(total):
        seen.append([g["lr"] for g in opt.param_groups])
        opt.step()
        sched.step()
    for step, (lr_b, lr_h) in enumerate(seen):
        if step < warm:
            f = (step + 1) / warm  # linear warm-up to the base lr
        else:
            t = (step - warm) / (total - warm)
            f = 0.05 + 0.95 * (1 + math.cos(math.pi * t)) / 2
        assert (lr_b, lr_h) == (pytest.approx(2e-4 * f), pytest.approx(2e-3 * f)), step
    assert seen[warm] == pytest.approx([2e-4, 2e-3])  # the cosine starts at each base
    assert seen[-1][1] / 2e-3 == pytest.approx(0.05 + 0.95 * (1 + math.cos(math.pi * 15 / 16)) / 2)
    assert min(lr for lr, _ in seen[warm:]) > 0.05 * 2e-4 - 1e-12  # never below the relative floor
