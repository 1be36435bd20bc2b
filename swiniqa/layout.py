"""Every folder and file name of a run, a checkpoint and a Tune experiment (no imports: cheap for the CLI).

    <output>/<run>/                     a ``swiniqa train`` run (Ray Train's storage folder)
        checkpoint_epochNNNN/           model.safetensors, best_model.safetensors, model.json, config.json,
                                        metrics.json, state.pt, manifest.json (written last)
        history.csv, curves.png, tensorboard/
    <experiment>/                       a ``swiniqa tune`` study
        train/<cell>-seed<k>/           each trial's run folder (as above)
        results.json                    one row per trial; final.json per trial; posthoc_test.json
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

# --- a Tune experiment ----------------------------------------------------------------------------
TRAIN_DIR = "train"
RESULTS_FILE = "results.json"
POSTHOC_FILE = "posthoc_test.json"
FINAL_FILE = "final.json"


def checkpoint_dir_name(epoch: int) -> str:
    """``checkpoint_epochNNNN``: the folder of the checkpoint written after (1-based) ``epoch``."""
    return f"checkpoint_epoch{int(epoch):04d}"


__all__ = ["WEIGHTS", "BEST_WEIGHTS", "CONFIG", "METRICS", "STATE", "MODEL", "MANIFEST", "TRAIN_DIR",
           "RESULTS_FILE", "POSTHOC_FILE", "FINAL_FILE", "checkpoint_dir_name"]
