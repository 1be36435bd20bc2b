"""One Tune trial (:func:`study_trial`: one Ray Train run) and the driver-side callbacks that watch trials:
:class:`TrialRecorder` (each trial's record, ``train/<run>/trial.json``) and :class:`TrialLines` (progress)."""

from __future__ import annotations

import logging
import math
import sys
from typing import Any, Optional

import ray.tune

from swiniqa.config import config_from_dict
from swiniqa.errors import SwiniqaError
from swiniqa.layout import TENSORBOARD_DIR, TRAIN_DIR
from swiniqa.storage import write_json
from tune_experiments.experiment import merge_result, new_record, read_trial, trial_record_uri
from tune_experiments.grids import run_name

log = logging.getLogger("swiniqa.tune")


def trial_name(trial) -> str:
    """``<cell>-seed<k>``: a trial's name, its Tune folder and its Train run's folder."""
    return run_name(trial.config["cell"], trial.config["seed"])


def study_trial(config: dict[str, Any], exp_uri: str = "", configs: Optional[dict] = None,
                splits: Optional[dict] = None, dataset: Optional[dict] = None) -> None:
    """One Tune trial: the Ray Train run of ``configs[cell]`` with ``seed``, then its test metrics.

    The Train run is named ``<cell>-seed<k>`` under ``<experiment>/train``: a trial restarted by
    ``--resume`` continues that run from its latest checkpoint. Its last report is the worker's final summary
    (``final_report``), per-epoch ``history`` included, which :class:`TrialRecorder` records.
    """
    from swiniqa.ray_runtime import worker_error
    from swiniqa.training.spot import epoch_report_callback
    from swiniqa.training.trainer import make_trainer

    cell, seed = config["cell"], int(config["seed"])
    cfg = config_from_dict(configs[cell]).replace(seed=seed)
    run = run_name(cell, seed)
    trainer, _ = make_trainer(cfg, run, f"{exp_uri}/{TRAIN_DIR}", splits[seed], callbacks=[epoch_report_callback()],
                              tensorboard=f"{exp_uri}/{TENSORBOARD_DIR}/{run}", dataset=dataset)
    try:
        result = trainer.fit()
    except Exception as e:  # noqa: BLE001 - one readable line in Tune's error.txt
        raise RuntimeError(str(worker_error(e))) from None
    final = dict(result.return_value or {})
    try:
        from swiniqa.training.curves import write_history

        write_history(f"{exp_uri}/{TRAIN_DIR}/{run}", final.get("history", []), run)
    except SwiniqaError:
        pass
    # Last row of the trial: the worker's test metrics of its best-validation weights.
    ray.tune.report({**final, "final_report": True, "epoch": final.get("epochs_run", 0),
                     "val_srcc": final.get("best_val_srcc", float("nan")),
                     "val_plcc": final.get("best_val_plcc", float("nan"))})


def _error_line(trial) -> str:
    """The last line of the trial's error file (Tune writes the exception there), or "failed"."""
    try:
        with open(trial.error_file) as f:
            lines = [ln for ln in f.read().splitlines() if ln.strip()]
        return lines[-1][:300] if lines else "failed"
    except (OSError, TypeError):
        return "failed"


class TrialRecorder(ray.tune.Callback):
    """Writes every trial's record (``<experiment>/train/<run>/trial.json``) as Tune hands the driver each result,
    start, stop and failure: the only writer of records (format: :mod:`tune_experiments.experiment`).

    A resumed sweep's driver starts from the records in storage, so a trial continued after a kill keeps the
    epochs it recorded before."""

    def __init__(self, exp_uri: str):
        self.exp_uri = exp_uri
        self._records: dict[str, dict[str, Any]] = {}

    def _record(self, trial) -> tuple[str, dict[str, Any]]:
        run = trial_name(trial)
        if run not in self._records:
            self._records[run] = read_trial(self.exp_uri, run) or new_record(run, trial.config["cell"],
                                                                              trial.config["seed"])
        self._records[run]["trial_id"] = trial.trial_id
        return run, self._records[run]

    def _save(self, run: str) -> None:
        try:
            write_json(trial_record_uri(self.exp_uri, run), self._records[run])
        except SwiniqaError as e:  # storage hiccup: the next result writes the record again
            log.warning(f"swiniqa: warning: cannot write the record of trial {run}: {e}")

    def on_trial_start(self, iteration, trials, trial, **info):
        run, rec = self._record(trial)
        rec.update(status="running", error=None)
        self._save(run)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        run, rec = self._record(trial)
        merge_result(rec, result)
        self._save(run)

    def on_trial_complete(self, iteration, trials, trial, **info):
        run, rec = self._record(trial)
        rec["status"] = "completed" if rec.get("final") else "early_stopped"  # no final report: ASHA stopped it
        self._save(run)

    def on_trial_error(self, iteration, trials, trial, **info):
        run, rec = self._record(trial)
        rec.update(status="error", error=_error_line(trial))
        self._save(run)


def _fmt(v: Any, spec: str = ".4f") -> str:
    try:
        return format(float(v), spec) if v is not None and math.isfinite(float(v)) else "-"
    except (TypeError, ValueError):
        return "-"


class TrialLines(ray.tune.Callback):
    """One stderr line per finished, early-stopped or failed trial (module level: Tune pickles it)."""

    def __init__(self, total: int, epochs: int):
        self.total, self.epochs = total, epochs

    def _line(self, trials, trial, what: str) -> None:
        n = 1 + sum(1 for t in trials if t is not trial and t.status in ("TERMINATED", "ERROR"))
        r = trial.last_result or {}
        if r.get("final_report"):
            how = "stopped by patience" if r.get("stopped_early") else "finished"
            ep = r.get("epochs_run", r.get("epoch"))
            extra = (f"best val SRCC {_fmt(r.get('best_val_srcc'))}@{r.get('best_epoch', '-')}  "
                     f"test SRCC {_fmt(r.get('test_srcc'))} PLCC {_fmt(r.get('test_plcc'))}")
        else:
            how = what
            ep = r.get("epoch", 0)
            extra = f"val SRCC {_fmt(r.get('val_srcc'))}  best {_fmt(r.get('best_val_srcc'))}@{r.get('best_epoch', '-')}"
        if r.get("resumes"):  # what the trial went through: reclaim notices, lost nodes, restarts
            from swiniqa.training.spot import resumes_text

            extra += f"  resumed after {resumes_text(r['resumes'])}"
        print(f"[{n}/{self.total}] {trial_name(trial)}: {how} after {ep}/{self.epochs} epochs  {extra}  "
              f"{_fmt(r.get('time_total_s'), '.0f')}s", file=sys.stderr, flush=True)

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._line(trials, trial, "early-stopped (ASHA)")

    def on_trial_error(self, iteration, trials, trial, **info):
        self._line(trials, trial, "FAILED")


__all__ = ["study_trial", "TrialRecorder", "TrialLines", "trial_name"]
