"""helpers.loop.fit makes the steps of torchmil's Trainer (helpers.training.train_model)."""

from __future__ import annotations

import pytest
import torch
import torchmil.models as tm
from tensordict import TensorDict

from helpers.data import make_loader
from helpers.loop import fit
from helpers.models import ABMIL
from helpers.settings import seed_everything
from helpers.training import binary_metrics, train_model


class Bags(torch.utils.data.Dataset):
    """Small random bags; the tumour ones (``flip``: the normal ones) hold a few shifted
    instances."""

    def __init__(self, n_bags: int, seed: int, dim: int = 6, flip: bool = False) -> None:
        g = torch.Generator().manual_seed(seed)
        self.bags = []
        for i in range(n_bags):
            size = int(torch.randint(5, 30, (1,), generator=g))
            X = torch.randn(size, dim, generator=g)  # (bag_size, dim)
            label = i % 2
            if label != flip:  # flip: the shifted bags are the normal ones
                X[:3] += 2.0
            self.bags.append(TensorDict({"X": X, "Y": torch.tensor([float(label)])}))

    def __len__(self) -> int:
        return len(self.bags)

    def __getitem__(self, i: int) -> TensorDict:
        return self.bags[i]


def _both(make_model, epochs: int = 6, batch_size: int = 1):
    train, val = Bags(12, seed=1), Bags(6, seed=2)
    runs = {}
    for name, trainer in (("trainer", train_model), ("fit", fit)):
        seed_everything(0)
        extra = {"metrics_dict": binary_metrics("cpu")} if trainer is fit else {}
        runs[name] = trainer(
            make_model(),
            make_loader(train, batch_size, shuffle=True, seed=3),
            make_loader(val, 1),
            epochs=epochs,
            device="cpu",
            seed=0,
            **extra,
        )
    return runs


@pytest.mark.parametrize(
    "make_model",
    [lambda: ABMIL(6, att_dim=8, hidden_dim=4), lambda: tm.DSMIL(in_shape=(6,))],
    ids=["ABMIL", "DSMIL (two losses)"],
)
def test_fit_gives_the_trainers_weights_and_history(make_model):
    runs = _both(make_model)
    (a, history_a), (b, history_b) = runs["trainer"], runs["fit"]
    for key, value in a.state_dict().items():
        assert torch.equal(value, b.state_dict()[key]), key
    columns = [c for c in history_a.columns if c != "seconds"]
    assert sorted(columns) == sorted(c for c in history_b.columns if c != "seconds")
    assert history_a[columns].equals(history_b[columns])
    assert not b.training


def test_patience_stops_early_and_keeps_the_best_epoch():
    # validation bags labelled the other way round: the better the model learns, the worse
    # its validation loss, so the best epoch comes early
    def run(**kwargs):
        seed_everything(0)
        return fit(
            ABMIL(6, att_dim=8, hidden_dim=4),
            make_loader(Bags(12, 1), 1, shuffle=True, seed=3),
            make_loader(Bags(6, 2, flip=True), 1),
            epochs=30,
            device="cpu",
            seed=0,
            **kwargs,
        )

    model_full, full = run()
    best = int(full.loc[full["val/loss"].idxmin(), "epoch"])
    worse = full["val/loss"].to_numpy()[best:]  # the epochs after the best
    patience = 2
    assert len(worse) > patience, "the run must go on past its best epoch for this test"
    model_short, short = run(patience=patience)
    # it stopped `patience` epochs after its best epoch, which is the full run's best
    assert len(short) == best + patience < len(full)
    assert short[["epoch", "val/loss"]].equals(full[["epoch", "val/loss"]].head(len(short)))
    for key, value in model_full.state_dict().items():
        assert torch.equal(value, model_short.state_dict()[key]), key


def test_fit_gives_the_trainers_weights_with_batches_of_several_bags():
    """Padded batches of two bags (with masks): the same weights and history again."""
    runs = _both(lambda: ABMIL(6, att_dim=8, hidden_dim=4), batch_size=2)
    (a, history_a), (b, history_b) = runs["trainer"], runs["fit"]
    for key, value in a.state_dict().items():
        assert torch.equal(value, b.state_dict()[key]), key
    columns = [c for c in history_a.columns if c != "seconds"]
    assert history_a[columns].equals(history_b[columns])
