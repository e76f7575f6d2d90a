"""Training with ``torchmil.utils.Trainer``, done right, and a small cache of trained weights.

``Trainer`` is generic but has three habits to know (formats.md): it feeds raw logits to
the metrics, it builds its default metric on the CPU, and it validates in train mode with
gradients on. :func:`binary_metrics` wraps each metric so it sees probabilities and lives
on the training device; our models have no dropout or batch norm, so train mode and eval
mode compute the same validation outputs. The best validation model (lowest validation
loss) is restored at the end.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import torch
import torchmetrics
from torchmetrics.wrappers import LambdaInputTransformer
from torchmil.utils import Trainer

from helpers.settings import Settings, get_device, seed_everything


def binary_metrics(device: torch.device | str) -> dict[str, torchmetrics.Metric]:
    """Accuracy, F1 and AUROC that take logits, on ``device``."""
    metrics = {
        "acc": torchmetrics.classification.BinaryAccuracy(),
        "f1": torchmetrics.classification.BinaryF1Score(),
        "auroc": torchmetrics.classification.BinaryAUROC(),
    }
    return {
        name: LambdaInputTransformer(
            m, transform_pred=torch.sigmoid, transform_target=lambda y: y.reshape(-1).long()
        ).to(device)
        for name, m in metrics.items()
    }


class _History:
    """A ``Trainer`` logger that keeps every epoch's metrics."""

    def __init__(self) -> None:
        self.rows: list[dict[str, float]] = []
        self._current: dict[str, float] = {}

    def log(self, metrics: dict[str, float]) -> None:
        self._current.update(metrics)
        if any(k.startswith("val/") for k in metrics):
            self.rows.append({"epoch": len(self.rows) + 1, **self._current})
            self._current = {}

    def table(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows)


def train_model(
    model: torch.nn.Module,
    train_loader: torch.utils.data.DataLoader,
    val_loader: torch.utils.data.DataLoader,
    epochs: int = 40,
    lr: float = 1e-3,
    weight_decay: float = 1e-4,
    device: torch.device | str | None = None,
    seed: int = 0,
    progress: bool = False,
) -> tuple[torch.nn.Module, pd.DataFrame]:
    """Train ``model`` with ``torchmil.utils.Trainer`` (Adam); keep the best validation weights.

    Returns ``(model, history)``: the model (best weights loaded, in eval mode, on ``device``)
    and one row of train/val loss and metrics per epoch, plus ``seconds`` per epoch.
    """
    device = torch.device(device) if device is not None else get_device()
    seed_everything(seed)
    model = model.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    history = _History()
    trainer = Trainer(
        model=model,
        optimizer=optimizer,
        metrics_dict=binary_metrics(device),
        obj_metric="loss",
        obj_metric_mode="min",
        device=device,
        logger=history,
        disable_pbar=not progress,
        verbose=False,
    )
    start = time.perf_counter()
    trainer.train(max_epochs=epochs, train_dataloader=train_loader, val_dataloader=val_loader)
    table = history.table()
    table["seconds"] = (time.perf_counter() - start) / max(len(table), 1)
    best = trainer.get_best_model().to(device).eval()
    return best, table


def cache_dir(cfg: Settings) -> Path:
    """Where trained weights are kept: next to the data (``<job_dir>/../models``)."""
    return cfg.job_dir.parent / "models"


def train_or_load(
    cfg: Settings,
    name: str,
    make_model: Callable[[], torch.nn.Module],
    train_loader: torch.utils.data.DataLoader,
    val_loader: torch.utils.data.DataLoader,
    device: torch.device | str | None = None,
    retrain: bool = False,
    **train_kwargs,
) -> tuple[torch.nn.Module, pd.DataFrame]:
    """Load ``name`` trained with these settings if an earlier chapter saved it, else train it.

    The cache key covers the data (encoder, slide names), the model's architecture and the
    training settings, so a change in any of them trains afresh.
    """
    device = torch.device(device) if device is not None else get_device()
    model = make_model()
    key = json.dumps(
        {
            "name": name,
            "data": [cfg.source, str(cfg.trident_dir), cfg.encoder],
            "train": list(train_loader.dataset.get_bag_names()),
            "val": list(val_loader.dataset.get_bag_names()),
            "model": repr(model),
            "kwargs": sorted((k, repr(v)) for k, v in train_kwargs.items()),
        },
        sort_keys=True,
    )
    digest = hashlib.sha1(key.encode()).hexdigest()[:12]
    path = cache_dir(cfg) / f"{name}-{digest}.pt"
    if path.exists() and not retrain:
        saved = torch.load(path, map_location="cpu", weights_only=False)
        model.load_state_dict(saved["state_dict"])
        return model.to(device).eval(), pd.DataFrame(saved["history"])
    model, history = train_model(model, train_loader, val_loader, device=device, **train_kwargs)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".partial")
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    torch.save({"state_dict": state, "history": history.to_dict("list")}, tmp)
    tmp.replace(path)
    return model, history
