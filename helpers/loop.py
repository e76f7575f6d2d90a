"""The training loop of ``torchmil.utils.Trainer``, without its per-step bookkeeping.

For the book's small models one optimizer step costs well under a millisecond, and
``Trainer`` spends more than that around it: it reads and collates every bag again each
epoch, copies it to the device, updates three torchmetrics objects and a running mean per
loss, and computes them for its progress bar, all at every step. :func:`fit` makes the same
steps (the same bags in the same order, the same ``compute_loss``, backward pass and
optimizer step) but

- reads each bag once and keeps it collated on the device (a batch of one bag; a batch of
  several is collated from the bags read once),
- keeps the step's losses and predictions on the device and reduces them once per epoch,
- validates in eval mode without gradients, as :class:`helpers.training.EvalTrainer` does,

so it returns the weights and the history that :func:`helpers.training.train_model` returns
for the same settings (``tests/test_loop.py`` holds the two equal).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sized
from typing import cast

import numpy as np
import pandas as pd
import torch
from tensordict import TensorDict
from torchmil.models import MILModelWrapper

from helpers.models import as_mil_model
from helpers.settings import get_device, seed_everything


def _n_bags(loader: torch.utils.data.DataLoader) -> int:
    """The number of bags in ``loader``'s dataset.

    Arguments:
        loader: A loader over a map-style dataset (torch types a ``Dataset``, which need not
            have a length; the book's datasets do).

    Returns:
        ``len(loader.dataset)``.
    """
    return len(cast(Sized, loader.dataset))


class BatchCache:
    """The batches of ``loader``, collated by its ``collate_fn`` and on ``device``.

    A batch of one bag is collated once and kept; a batch of several bags (a new mix every
    epoch) is collated from bags read once and kept on the CPU.
    """

    def __init__(self, loader: torch.utils.data.DataLoader, device: torch.device) -> None:
        self.bags = [loader.dataset[i] for i in range(_n_bags(loader))]
        # the loader's collate_fn (helpers.data.collate): bags in, one TensorDict out
        self.collate = cast("Callable[[list], TensorDict]", loader.collate_fn)
        self.device = device
        self.single: dict[int, TensorDict] = {}

    def __call__(self, idx: list[int]) -> TensorDict:
        if len(idx) > 1:
            return self._collate(idx)
        if idx[0] not in self.single:
            self.single[idx[0]] = self._collate(idx)
        return self.single[idx[0]]

    def _collate(self, idx: list[int]) -> TensorDict:
        # torchmil's collate_fn builds sparse adjacency matrices from valid indices: say so,
        # which also silences torch's warning that the checks are off
        with torch.sparse.check_sparse_tensor_invariants(enable=False):
            return self.collate([self.bags[i] for i in idx]).to(self.device)


def _batch_order(loader: torch.utils.data.DataLoader) -> list[list[int]]:
    """The bag indices of each batch of one pass over ``loader``, in ``loader``'s order.

    A twin loader over the indices shares ``loader``'s batch sampler and generator, so it
    draws exactly what iterating ``loader`` itself would draw.
    """
    twin = torch.utils.data.DataLoader(
        range(_n_bags(loader)),  # pyright: ignore[reportArgumentType]  (any sequence will do)
        batch_sampler=loader.batch_sampler,
        generator=loader.generator,
        collate_fn=list,
    )
    return list(twin)


def _mean32(values: list[float]) -> float:
    """The mean of ``values`` as ``torchmetrics.MeanMetric`` computes it (float32, in order)."""
    total = np.cumsum(np.asarray(values, dtype=np.float32), dtype=np.float32)[-1]
    return float(total / np.float32(len(values)))


class PassRecord:
    """What one pass over the bags saw: each step's losses and predictions, on the device."""

    def __init__(self) -> None:
        self.losses: dict[str, list[torch.Tensor]] = {"loss": []}
        self.preds: list[torch.Tensor] = []
        self.targets: list[torch.Tensor] = []

    def add(self, loss: torch.Tensor, loss_dict: dict, pred: torch.Tensor, y: torch.Tensor):
        for name, value in loss_dict.items():
            self.losses.setdefault(name, []).append(value.detach())
        self.losses["loss"].append(loss.detach())
        self.preds.append(pred.detach())
        self.targets.append(y)

    def metrics(self, mode: str, metrics_dict: dict) -> dict[str, float]:
        """``{f"{mode}/{name}": value}`` for the mean of every loss and for every metric."""
        out = {
            f"{mode}/{name}": _mean32(torch.stack(values).cpu().tolist())
            for name, values in self.losses.items()
        }
        preds, targets = torch.cat(self.preds), torch.cat(self.targets)
        for name, metric in metrics_dict.items():
            metric.reset()
            metric.update(preds, targets)
            out[f"{mode}/{name}"] = metric.compute().item()
        return out


# Defined in chapter 4 ("A faster loop for small models"): the chapter shows this function;
# tests/test_models.py::test_chapter_4_shows_the_package_code holds the two equal.
def one_pass(
    wrapper: MILModelWrapper,
    get_batch: BatchCache,
    order: list[list[int]],
    optimizer: torch.optim.Optimizer | None = None,
) -> PassRecord:
    """One pass over the batches in ``order`` (bag indices); trains if ``optimizer``."""
    record = PassRecord()
    for idx in order:
        batch = get_batch(idx)  # collated once, on the device
        if optimizer is not None:
            optimizer.zero_grad()
        pred, loss_dict = wrapper.compute_loss(batch)  # what Trainer calls
        # Trainer's total loss: a tensor (sum() of an untyped dict's values is typed int)
        loss = sum(loss_dict.values())
        if optimizer is not None:
            loss.backward()  # pyright: ignore[reportAttributeAccessIssue]
            optimizer.step()
        # no .item(): no wait for the device
        record.add(loss, loss_dict, pred, batch["Y"])  # pyright: ignore[reportArgumentType]
    return record


def _epoch(
    wrapper: MILModelWrapper,
    loaders: tuple[
        BatchCache, torch.utils.data.DataLoader, BatchCache, torch.utils.data.DataLoader
    ],
    optimizer: torch.optim.Optimizer,
    metrics_dict: dict,
) -> dict[str, float]:
    """One epoch: a training pass, then a validation pass (``loaders``: the training bags
    and their loader, the validation bags and theirs), each in the order its loader's sampler
    draws before the pass, as a DataLoader does; returns their ``train/...`` and ``val/...``
    losses and metrics."""
    train_batches, train_loader, val_batches, val_loader = loaders
    order = _batch_order(train_loader)
    wrapper.train()
    row = one_pass(wrapper, train_batches, order, optimizer).metrics("train", metrics_dict)
    wrapper.eval()
    with torch.no_grad():
        val_order = _batch_order(val_loader)
        row |= one_pass(wrapper, val_batches, val_order).metrics("val", metrics_dict)
    wrapper.train()
    return row


def fit(
    model: torch.nn.Module,
    train_loader: torch.utils.data.DataLoader,
    val_loader: torch.utils.data.DataLoader,
    epochs: int = 40,
    lr: float = 1e-3,
    weight_decay: float = 1e-4,
    device: torch.device | str | None = None,
    seed: int = 0,
    metrics_dict: dict | None = None,
    patience: int | None = None,
) -> tuple[torch.nn.Module, pd.DataFrame]:
    """Train ``model`` as :func:`helpers.training.train_model` does, faster (module docstring).

    Arguments:
        model: a torchmil-style MIL model (``compute_loss`` taking the bag's keys).
        train_loader: the training bags, one per batch; its sampler and generator set the
            order of the bags, as they would for ``Trainer``.
        val_loader: the validation bags, one per batch.
        epochs, lr, weight_decay, seed: Adam's settings and the seed set before training.
        device: where to train (default ``get_device()``).
        metrics_dict: torchmetrics objects taking ``(logits, Y)``, computed once per epoch on
            the epoch's predictions (:func:`helpers.training.binary_metrics`; none if None).
        patience: stop after this many epochs in a row without a lower validation loss
            (``Trainer``'s ``early_stop_patience``); None: run all ``epochs``.

    Returns:
        ``(model, history)``: the model with the weights of the epoch with the lowest
        validation loss, in eval mode on ``device``, and one row per epoch (``epoch``,
        ``train/...`` and ``val/...`` losses and metrics, ``seconds`` per epoch).
    """
    device = torch.device(device) if device is not None else get_device()
    seed_everything(seed)
    model = model.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    wrapper = MILModelWrapper(as_mil_model(model)).to(device)
    metrics_dict = metrics_dict or {}
    train_batches, val_batches = BatchCache(train_loader, device), BatchCache(val_loader, device)
    rows, best_loss, best_state = [], float("inf"), copy.deepcopy(model.state_dict())
    since_best = 0
    start = time.perf_counter()
    for epoch in range(1, epochs + 1):
        row = {"epoch": epoch}
        loaders = (train_batches, train_loader, val_batches, val_loader)
        row |= _epoch(wrapper, loaders, optimizer, metrics_dict)
        rows.append(row)
        if row["val/loss"] < best_loss:  # strictly lower, as Trainer decides
            best_loss, best_state = row["val/loss"], copy.deepcopy(model.state_dict())
            since_best = 0
        else:
            since_best += 1
            if patience is not None and since_best >= patience:
                break
    history = pd.DataFrame(rows)
    history["seconds"] = (time.perf_counter() - start) / max(len(history), 1)
    model.load_state_dict(best_state)
    return model.eval(), history
