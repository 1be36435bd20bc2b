"""Shared fixtures: one Ray instance per test session (start-up costs seconds here), small demo data."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", "0")
os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.2")
os.environ.setdefault("RAY_TRAIN_METRICS_ENABLED", "0")


@pytest.fixture(scope="session")
def ray_session():
    """A local Ray with the dashboard (Tune's early stopping needs its state API to free workers)."""
    import ray

    if not ray.is_initialized():
        # A free dashboard port: another Ray on this machine (a second test run, a user's sweep) may hold 8265.
        from swiniqa.ray_runtime import dashboard_port

        # address="local": never join a Ray that happens to run on the machine (`ray start`, RAY_ADDRESS).
        ray.init(address="local", num_cpus=2, log_to_driver=False, dashboard_host="127.0.0.1",
                 dashboard_port=dashboard_port(0), logging_level="ERROR")
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def demo_root(tmp_path_factory):
    """The real demo dataset, generated once per session into a temp cache."""
    from swiniqa.data.demo import write_demo

    return write_demo(tmp_path_factory.mktemp("demo") / "demo")


@pytest.fixture()
def tiny_cfg(demo_root, tmp_path):
    """A config that trains in seconds: nano Swin, few images' worth of patches."""
    from swiniqa.config import preset

    return preset("demo").replace(model_size="nano", data_root=str(demo_root), epochs=2, train_patches=1,
                                  test_patches=2, batch_size=8, output=str(tmp_path / "runs"), warmup_epochs=0, max_images=48, patch_size=128)


@pytest.fixture(scope="module")
def small_demo(demo_root, tmp_path_factory):
    """The demo dataset cut to 6 images per source photo (the driver decode-checks every image)."""
    import helpers

    return helpers.small_demo(demo_root, tmp_path_factory.mktemp("small") / "demo")


@pytest.fixture()
def one_torch_thread():
    """Nano forward passes on a shared 2-core machine: one intra-op thread is ~10x faster than two fighting."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
