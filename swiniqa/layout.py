"""Every folder and file name of a run, a checkpoint, a Tune experiment and a pull (no imports: cheap for the CLI).

    <output>/<run>/                     a ``swiniqa train`` run (Ray Train's storage folder)
        checkpoint_epochNNNN/           model.safetensors, best_model.safetensors, model.json, config.json,
                                        metrics.json, state.pt, manifest.json (written last)
        history.csv, curves.png, tensorboard/, environment.json, dataset.json
    <experiment>/                       a ``swiniqa tune`` study
        study.json                      what was asked (written before the sweep)
        train/<cell>-seed<k>/           each trial's run folder (as above) + trial.json, the trial's record
        results.json                    one row per trial (built from the records)
        report/                         tables and figures
        tensorboard/<cell>-seed<k>/     each trial's TensorBoard events
    <dest>/<folder>/                    a ``swiniqa pull``: the checkpoint's files + pulled.json
"""

from __future__ import annotations

# --- files of one checkpoint folder ---------------------------------------------------------------
WEIGHTS = "model.safetensors"
BEST_WEIGHTS = "best_model.safetensors"
CONFIG = "config.json"
METRICS = "metrics.json"
STATE = "state.pt"
MODEL = "model.json"
MANIFEST = "manifest.json"
#: Provenance (swiniqa.provenance): in every checkpoint and run folder.
ENVIRONMENT = "environment.json"
DATASET_FINGERPRINT = "dataset.json"

# --- a run folder (beside its checkpoints) -----------------------------------------------------------
HISTORY_FILE = "history.csv"
CURVES_FILE = "curves.png"
#: TensorBoard event files: ``<run>/tensorboard/``, in a Tune experiment ``<experiment>/tensorboard/<run>/``.
TENSORBOARD_DIR = "tensorboard"

# --- a Tune experiment ----------------------------------------------------------------------------
TRAIN_DIR = "train"
STUDY_FILE = "study.json"
RESULTS_FILE = "results.json"
#: One trial's record (``train/<run>/trial.json``): status, per-epoch metrics, the worker's final metrics and
#: the post-hoc test, written by the sweep's driver alone (``tune_experiments.trial.TrialRecorder``).
TRIAL_FILE = "trial.json"
REPORT_DIR = "report"

# --- a pulled checkpoint ----------------------------------------------------------------------------
#: Where a pulled checkpoint came from (source URI, metric, rank, sha256 of every file).
PULLED_FILE = "pulled.json"


def checkpoint_dir_name(epoch: int) -> str:
    """``checkpoint_epochNNNN``: the folder of the checkpoint written after (1-based) ``epoch``."""
    return f"checkpoint_epoch{int(epoch):04d}"


__all__ = ["WEIGHTS", "BEST_WEIGHTS", "CONFIG", "METRICS", "STATE", "MODEL", "MANIFEST", "ENVIRONMENT",
           "DATASET_FINGERPRINT", "HISTORY_FILE", "CURVES_FILE", "TENSORBOARD_DIR", "TRAIN_DIR", "STUDY_FILE",
           "RESULTS_FILE", "TRIAL_FILE", "REPORT_DIR", "PULLED_FILE", "checkpoint_dir_name"]
