"""SMART-IQA study grids on Ray Tune: grid definitions, the sweep driver, aggregation and figures.

* :mod:`tune_experiments.grids`: the ``lr``, ``size``, ``ablation`` and ``augment`` grids;
* :mod:`tune_experiments.driver`: :func:`~tune_experiments.driver.run_study` (``swiniqa tune``), built on
  :mod:`~tune_experiments.planning`, :mod:`~tune_experiments.trial`, :mod:`~tune_experiments.placement` and
  :mod:`~tune_experiments.posthoc`;
* :mod:`tune_experiments.experiment`: an experiment folder as one row per trial (each trial's record);
* :mod:`tune_experiments.aggregate`: :func:`~tune_experiments.aggregate.build_report` (``swiniqa report``), with
  :mod:`~tune_experiments.stats` (CIs, differences) and :mod:`~tune_experiments.tables`;
* :mod:`tune_experiments.plots`: PNG figures.

Importing the package is cheap (no Ray, no torch); submodules import what they need.
"""

from tune_experiments.grids import STUDIES, get_study

__all__ = ["STUDIES", "get_study"]
