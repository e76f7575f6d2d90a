"""helpers.runs.train_many: runs trained in worker processes equal runs trained here."""

from __future__ import annotations

import sys

import pytest
import torch
from cloudpickle import register_pickle_by_value

from helpers.data import make_loader
from helpers.models import ABMIL
from helpers.runs import Run, train_many
from helpers.settings import load_settings
from helpers.training import train_or_load

register_pickle_by_value(sys.modules[__name__])  # the workers cannot import this file


class Bags(torch.utils.data.Dataset):
    """Small random bags with names; the tumour ones hold a few shifted instances."""

    def __init__(self, n_bags: int, seed: int, dim: int = 6) -> None:
        g = torch.Generator().manual_seed(seed)
        self.bags = []
        for i in range(n_bags):
            X = torch.randn(int(torch.randint(5, 30, (1,), generator=g)), dim, generator=g)
            X[:3] += 2.0 * (i % 2)  # (bag_size, dim)
            self.bags.append({"X": X, "Y": torch.tensor([float(i % 2)])})

    def __len__(self) -> int:
        return len(self.bags)

    def __getitem__(self, i: int):
        from tensordict import TensorDict

        return TensorDict(self.bags[i])

    def get_bag_names(self) -> list[str]:
        return [f"bag{i}" for i in range(len(self.bags))]


def _runs(seeds) -> list[Run]:
    train, val = Bags(10, seed=1), Bags(4, seed=2)
    return [
        Run(
            name=f"abmil-seed{seed}",
            make_model=lambda: ABMIL(6, att_dim=8, hidden_dim=4),
            train_loader=make_loader(train, 1, shuffle=True, seed=seed),
            val_loader=make_loader(val, 1),
            train_kwargs={"seed": seed, "epochs": 4},
        )
        for seed in seeds
    ]


@pytest.mark.slow
def test_runs_trained_in_workers_equal_runs_trained_here(tmp_path, monkeypatch):
    cfg = load_settings()
    monkeypatch.setenv("MIL_BOOK_MODELS_DIR", str(tmp_path / "here"))
    here = [
        train_or_load(cfg, r.name, r.make_model, r.train_loader, r.val_loader, device="cpu",
                      **r.train_kwargs)[0]
        for r in _runs([0, 1, 2])
    ]  # fmt: skip
    monkeypatch.setenv("MIL_BOOK_MODELS_DIR", str(tmp_path / "workers"))
    runs = _runs([0, 1, 2])
    assert not any(r.cached(cfg) for r in runs)
    workers = train_many(cfg, runs, device="cpu", n_jobs=2)
    assert all(r.cached(cfg) for r in runs)  # the workers saved every run
    for a, (b, history) in zip(here, workers, strict=True):
        assert len(history) == 4 and not b.training
        for key, value in a.state_dict().items():
            assert torch.equal(value, b.state_dict()[key]), key
    # the seeds differ, so the runs do too
    assert not torch.equal(here[0].state_dict()["classifier.weight"],
                           here[1].state_dict()["classifier.weight"])  # fmt: skip
