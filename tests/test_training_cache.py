"""Cached trained weights are keyed on the data they were trained on (issue 9): new features
or labels under the same slide names train afresh instead of loading stale weights."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from tensordict import TensorDict

from helpers import training
from helpers.data import make_loader
from helpers.models import ABMIL
from helpers.settings import Settings


class Bags(torch.utils.data.Dataset):
    """Four small bags: names, features ``(n, 4)``, labels."""

    def __init__(self, seed: int = 0, flip: int | None = None) -> None:
        g = torch.Generator().manual_seed(seed)
        self.names = ["a", "b", "c", "d"]
        self.bags = []
        for i, _ in enumerate(self.names):
            y = float(i % 2 if i != flip else 1 - i % 2)
            n = 3 + i
            self.bags.append(
                TensorDict(
                    {"X": torch.randn(n, 4, generator=g), "Y": torch.tensor([y]),
                     "y_inst": torch.zeros(n)},
                    batch_size=[],
                )
            )  # fmt: skip

    def get_bag_names(self) -> list[str]:
        return self.names

    def __len__(self) -> int:
        return len(self.bags)

    def __getitem__(self, i: int) -> TensorDict:
        return self.bags[i]


@pytest.fixture
def cfg(tmp_path, monkeypatch):
    monkeypatch.setattr(training, "cache_dir", lambda cfg: tmp_path)
    return Settings("demo", tmp_path, None, None, tmp_path, "x", tmp_path, tmp_path)


def fit(cfg, train, val):
    return training.train_or_load(
        cfg,
        "t",
        lambda: ABMIL(4, att_dim=4, hidden_dim=3),
        make_loader(train, shuffle=True),
        make_loader(val),
        device="cpu",
        epochs=1,
    )


def test_fingerprint_follows_the_content():
    base = training.data_fingerprint(Bags())
    assert training.data_fingerprint(Bags()) == base
    assert training.data_fingerprint(Bags(seed=1)) != base  # other features, same names
    assert training.data_fingerprint(Bags(flip=2)) != base  # one label changed
    changed = Bags()
    changed.bags[3]["X"][0, 0] += 1e-3  # one number
    assert training.data_fingerprint(changed) != base


def test_fingerprint_ignores_the_patch_labels():
    """Training never reads ``y_inst``: adding or correcting patch labels keeps the cache."""
    base = training.data_fingerprint(Bags())
    relabelled = Bags()
    relabelled.bags[1]["y_inst"][0] = 1.0
    assert training.data_fingerprint(relabelled) == base
    without = Bags()
    for bag in without.bags:
        del bag["y_inst"]
    assert training.data_fingerprint(without) == base
    assert "y_inst" in training.UNTRAINED_KEYS and "Y" not in training.UNTRAINED_KEYS


def test_new_data_under_the_same_names_is_trained_not_loaded(cfg, tmp_path, monkeypatch):
    fit(cfg, Bags(), Bags(seed=9))
    assert len(list(tmp_path.glob("t-*.pt"))) == 1
    calls = []
    real = training.fit

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(training, "fit", counting)
    fit(cfg, Bags(), Bags(seed=9))
    assert calls == [], "same data: loaded from the cache"
    fit(cfg, Bags(seed=1), Bags(seed=9))  # the cohort rebuilt with another seed
    fit(cfg, Bags(), Bags(seed=9, flip=1))  # a validation label edited
    assert calls == [1, 1]
    assert len(list(tmp_path.glob("t-*.pt"))) == 3


def test_a_loaded_model_reports_the_history_it_was_trained_with(cfg):
    _, first = fit(cfg, Bags(), Bags(seed=9))
    _, second = fit(cfg, Bags(), Bags(seed=9))
    pd.testing.assert_frame_equal(first.reset_index(drop=True), second, check_dtype=False)
