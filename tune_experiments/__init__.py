"""SMART-IQA study grids on Ray Tune: grid definitions, the sweep driver, aggregation and figures.

* :mod:`tune_experiments.grids`: the ``lr``, ``size``, ``ablation`` and ``augment`` grids;
* :mod:`tune_experiments.driver`: :func:`~tune_experiments.driver.run_study` (``swiniqa tune``);
* :mod:`tune_experiments.aggregate`: tables, CIs, ``results.json`` (``swiniqa report``);
* :mod:`tune_experiments.plots`: PNG figures.

Importing the package is cheap (no Ray, no torch); submodules import what they need.
"""

from tune_experiments.grids import STUDIES, get_study

__all__ = ["STUDIES", "get_study"]
