import numpy as np
import pytest
from scipy import stats

from swiniqa.evaluation.metrics import all_metrics, fit_logistic, krcc, plcc, srcc

pytestmark = pytest.mark.core


def test_metrics_match_scipy():
    rng = np.random.default_rng(0)
    m = rng.uniform(0, 100, 200)
    p = m + rng.normal(0, 15, 200)
    assert srcc(p, m) == pytest.approx(stats.spearmanr(p, m)[0])
    assert plcc(p, m) == pytest.approx(stats.pearsonr(p, m)[0])
    assert krcc(p, m) == pytest.approx(stats.kendalltau(p, m)[0])
    out = all_metrics(p, m)
    assert out["n_images"] == 200 and out["rmse"] == pytest.approx(np.sqrt(np.mean((p - m) ** 2)))


def test_logistic_fit_improves_plcc_on_a_monotone_nonlinearity():
    x = np.linspace(-3, 3, 100)
    mos = 1 / (1 + np.exp(-2 * x)) * 4 + 1
    assert plcc(fit_logistic(x, mos), mos) > plcc(x, mos)
    assert all_metrics(x, mos)["plcc_fit"] > 0.99


def test_constant_prediction_gives_nan_not_crash():
    assert np.isnan(srcc(np.ones(5), np.arange(5)))
    assert np.isnan(all_metrics(np.ones(5), np.arange(5))["plcc"])
