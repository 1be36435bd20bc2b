"""Provenance: every run folder and checkpoint says what made it (environment.json, dataset.json), the report
says whether a study's trials share one environment and one dataset, and eval/predict --json carry the
checkpoint's fingerprint. Expected values are computed here from the files themselves (hashlib, os), not
by the provenance module."""

from __future__ import annotations

import hashlib
import json
import os
import shutil

import pytest

from learnable_data import noise_config, write_noise_dataset

pytestmark = pytest.mark.core


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def test_environment_records_versions_machine_and_a_hash_of_every_installed_package():
    from importlib import metadata

    import torch

    from swiniqa.provenance import environment

    env = environment(workers=[{"rank": 0, "node": "a", "device": "cpu"}, {"rank": 1, "node": "b", "device": "cpu"}])
    for pkg in ("torch", "torchvision", "timm", "numpy", "pillow", "scipy", "ray", "safetensors"):
        assert env["packages"][pkg] == metadata.version(pkg)
    assert env["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert env["python"].count(".") == 2 and env["cpu_model"] and env["workers"] == 2 and env["nodes"] == 2
    names = {}
    for d in metadata.distributions():
        if d.metadata.get("Name"):
            names[d.metadata["Name"].strip().lower().replace("_", "-")] = d.version
    assert env["packages_sha256"] == _sha("\n".join(f"{n}=={v}" for n, v in sorted(names.items())))
    assert env["git_commit"] is None or len(env["git_commit"]) == 40


def test_environment_id_changes_with_what_changes_numbers_and_not_with_the_host():
    from swiniqa.provenance import environment, environment_id

    env = environment(with_torch=False)
    assert environment_id({**env, "host": "elsewhere", "workers": 8}) == env["environment_id"]
    assert environment_id({**env, "cpu_capability": "AVX2"}) != env["environment_id"]
    assert environment_id({**env, "packages": {**env["packages"], "torch": "0.0"}}) != env["environment_id"]
    assert environment_id({**env, "numeric_env": {"ATEN_CPU_CAPABILITY": "avx2"}}) != env["environment_id"]


def test_dataset_fingerprint_hashes_label_files_and_sorted_image_list_with_sizes(tmp_path):
    from swiniqa.data.records import read_dataset
    from swiniqa.provenance import dataset_fingerprint

    root, _ = write_noise_dataset(tmp_path / "a", n=6, size=40)
    info = read_dataset("csv", root)
    fp = dataset_fingerprint("csv", info.root, [r.path for r in info.records], info.label_files)
    rows = sorted(f"{os.path.basename(r.path)}\t{os.path.getsize(r.path)}" for r in info.records)
    assert fp["images"] == 6 and fp["images_sha256"] == _sha("\n".join(rows))
    labels = os.path.join(root, "labels.csv")
    assert fp["label_files"] == {"labels.csv": hashlib.sha256(open(labels, "rb").read()).hexdigest()}
    # the same release copied elsewhere: the same fingerprint
    shutil.copytree(root, tmp_path / "b")
    info_b = read_dataset("csv", str(tmp_path / "b"))
    assert dataset_fingerprint("csv", info_b.root, [r.path for r in info_b.records],
                               info_b.label_files)["fingerprint"] == fp["fingerprint"]
    # one label edited, or one image changed in size: another fingerprint
    with open(tmp_path / "b" / "labels.csv", "a") as f:
        f.write("\n")
    info_b = read_dataset("csv", str(tmp_path / "b"))
    assert dataset_fingerprint("csv", info_b.root, [r.path for r in info_b.records],
                               info_b.label_files)["fingerprint"] != fp["fingerprint"]
    with open(info.records[0].path, "ab") as f:
        f.write(b"\0")
    assert dataset_fingerprint("csv", info.root, [r.path for r in info.records],
                               info.label_files)["fingerprint"] != fp["fingerprint"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One in-process epoch on learnable data: its run folder."""
    from swiniqa.training.local import train_in_process

    root, _ = write_noise_dataset(tmp_path_factory.mktemp("prov") / "data", n=24, size=72)
    run_dir = str(tmp_path_factory.mktemp("prov") / "run")
    train_in_process(noise_config(root, epochs=1), run_dir)
    return root, run_dir


def test_run_folder_and_every_checkpoint_hold_environment_and_dataset(trained):
    from swiniqa.provenance import environment_id

    root, run_dir = trained
    ckpts = sorted(d for d in os.listdir(run_dir) if d.startswith("checkpoint_"))
    assert ckpts
    for folder in [run_dir] + [os.path.join(run_dir, c) for c in ckpts]:
        env = json.load(open(os.path.join(folder, "environment.json")))
        ds = json.load(open(os.path.join(folder, "dataset.json")))
        assert env["environment_id"] == environment_id(env) and env["workers"] == 1
        assert ds["label_files"] == {"labels.csv": hashlib.sha256(open(os.path.join(root, "labels.csv"), "rb")
                                                                  .read()).hexdigest()}
        names = sorted(n for n in os.listdir(root) if n.endswith(".png"))
        assert ds["images"] == len(names) == 24
        rows = sorted(f"{n}\t{os.path.getsize(os.path.join(root, n))}" for n in names)
        assert ds["images_sha256"] == _sha("\n".join(rows))
        if folder != run_dir:  # inside a checkpoint they are covered by the manifest
            files = json.load(open(os.path.join(folder, "manifest.json")))["files"]
            for name in ("environment.json", "dataset.json"):
                assert files[name]["sha256"] == hashlib.sha256(open(os.path.join(folder, name), "rb").read()).hexdigest()


def test_predict_and_eval_json_carry_the_checkpoints_fingerprint(trained, capsys):
    from swiniqa.cli import main

    root, run_dir = trained
    ckpt = sorted(os.path.join(run_dir, d) for d in os.listdir(run_dir) if d.startswith("checkpoint_"))[-1]
    env = json.load(open(os.path.join(ckpt, "environment.json")))
    ds = json.load(open(os.path.join(ckpt, "dataset.json")))
    want = {"checkpoint": hashlib.sha256(open(os.path.join(ckpt, "manifest.json"), "rb").read()).hexdigest()[:16],
            "environment_id": env["environment_id"], "dataset_fingerprint": ds["fingerprint"],
            "git_commit": env["git_commit"], "git_dirty": env["git_dirty"]}
    image = os.path.join(root, "im000.png")
    assert main(["predict", "--checkpoint", ckpt, image, "--json"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["fingerprint"] == want
    assert main(["eval", "--checkpoint", ckpt, "--dataset", "csv", "--data-root", root, "--json"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["fingerprint"] == want


def test_report_names_the_trials_that_ran_on_another_environment_or_dataset(tmp_path):
    from test_aggregate import _fake_experiment
    from tune_experiments.aggregate import build_report

    exp = _fake_experiment(tmp_path, {"jitter-off": {0: (0.80, 0.90), 1: (0.82, 0.92)},
                                      "jitter-on": {0: (0.83, 0.91), 1: (0.79, 0.94)}})
    env = {"environment_id": "e1", "cpu_capability": "AVX512", "packages": {"torch": "2.14.1"}, "python": "3.11.7"}
    for run in ("jitter-off-seed0", "jitter-off-seed1", "jitter-on-seed0"):
        (exp / "train" / run / "environment.json").write_text(json.dumps(env))
        (exp / "train" / run / "dataset.json").write_text(json.dumps({"fingerprint": "d1"}))
    s = build_report(str(exp))
    p = s["provenance"]
    assert not p["one_environment"] and p["missing"] == ["jitter-on-seed1"]  # wrote no provenance
    other = exp / "train" / "jitter-on-seed1"
    (other / "environment.json").write_text(json.dumps({**env, "environment_id": "e2", "cpu_capability": "AVX2"}))
    (other / "dataset.json").write_text(json.dumps({"fingerprint": "d2"}))
    s = build_report(str(exp))
    p = s["provenance"]
    assert not p["one_environment"] and not p["one_dataset"] and p["missing"] == []
    assert p["differ"] == [{"run": "jitter-on-seed1", "environment_fields": ["cpu_capability"], "dataset": "d2"}]
    assert "jitter-on-seed1: environment (cpu_capability) and dataset d2" in open(s["tables"]["md"]).read()
    (other / "environment.json").write_text(json.dumps(env))
    (other / "dataset.json").write_text(json.dumps({"fingerprint": "d1"}))
    p = build_report(str(exp))["provenance"]
    assert p["one_environment"] and p["one_dataset"] and p["differ"] == []
    rows = json.load(open(exp / "results.json"))
    assert {r["environment_id"] for r in rows} == {"e1"} and {r["dataset_fingerprint"] for r in rows} == {"d1"}
