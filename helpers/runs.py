"""Many training runs at once: the ones not cached yet train side by side, one per CPU core.

Chapter 7 trains nine models with three seeds each. On a CPU every run uses one thread
(these models are too small for PyTorch's thread pool to pay), so a run keeps one core busy
and leaves the others idle. :func:`train_many` trains the runs that
:func:`helpers.training.train_or_load` has not cached yet in worker processes (joblib's
``loky`` backend, which works from a notebook on Linux, macOS and Windows alike), one per
core, each saving its weights; then it loads every run in order in this process. Each run
seeds itself and computes on one thread, so its weights do not depend on which process
trained it or on what ran beside it (``tests/test_runs.py``). On a GPU, or with one core,
the runs train one after the other here.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field

import pandas as pd
import torch
from joblib import Parallel, delayed

from helpers.settings import Settings, seed_everything
from helpers.training import cache_dir, cache_path, cache_problem, train_or_load


@dataclass
class Run:
    """One call of :func:`helpers.training.train_or_load`: its name, model and loaders."""

    name: str
    make_model: Callable[[], torch.nn.Module]
    train_loader: torch.utils.data.DataLoader
    val_loader: torch.utils.data.DataLoader
    train_kwargs: dict = field(default_factory=dict)

    def cached(self, cfg: Settings) -> bool:
        seed_everything(self.train_kwargs.get("seed", 0))  # as train_or_load builds it
        model = self.make_model()
        args = (cfg, self.name, model, self.train_loader, self.val_loader, self.train_kwargs)
        return cache_path(*args).exists()


def _train_in_worker(cfg: Settings, run: Run) -> None:
    """Train ``run`` on one CPU thread and save its weights (a worker process)."""
    torch.set_num_threads(1)
    train_or_load(
        cfg, run.name, run.make_model, run.train_loader, run.val_loader, device="cpu",
        **run.train_kwargs,
    )  # fmt: skip


def cpu_workers() -> int:
    """The CPU cores this process may use (``os.sched_getaffinity`` where it exists)."""
    if hasattr(os, "sched_getaffinity"):
        return max(len(os.sched_getaffinity(0)), 1)
    return max(os.cpu_count() or 1, 1)


def train_many(
    cfg: Settings,
    runs: list[Run],
    device: torch.device | str,
    n_jobs: int | None = None,
) -> list[tuple[torch.nn.Module, pd.DataFrame]]:
    """Train (or load) every run; returns ``(model, history)`` per run, in order.

    Arguments:
        cfg: the settings of ``helpers.settings.setup()`` (where the weights are cached).
        runs: the runs, each as :func:`helpers.training.train_or_load` takes it.
        device: where the models go; on a CPU the uncached runs train in ``n_jobs``
            worker processes first.
        n_jobs: worker processes (default: one per CPU core, at most one per uncached run).

    Returns:
        One ``(model, history)`` per run, the model in eval mode on ``device``.
    """
    device = torch.device(device)
    # (where the weights cannot be saved, the workers' runs would be lost: train here)
    parallel = device.type == "cpu" and cache_problem(cache_dir(cfg)) is None
    todo = [run for run in runs if not run.cached(cfg)] if parallel else []
    n_jobs = min(n_jobs or cpu_workers(), len(todo))
    if n_jobs > 1:
        Parallel(n_jobs=n_jobs, backend="loky")(delayed(_train_in_worker)(cfg, r) for r in todo)
    return [
        train_or_load(
            cfg,
            run.name,
            run.make_model,
            run.train_loader,
            run.val_loader,
            device=device,
            **run.train_kwargs,
        )  # fmt: skip
        for run in runs
    ]
