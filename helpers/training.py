"""Training with ``torchmil.utils.Trainer``, done right, and a small cache of trained weights.

``Trainer`` is generic but has three habits to know (formats.md):

- it feeds the model's raw logits to the metrics: :func:`binary_metrics` wraps each metric so
  that it sees probabilities;
- it builds its default metric on the CPU, which fails on a GPU: :func:`binary_metrics`
  puts the metrics on the training device;
- it runs validation in train mode, with gradients on: :class:`EvalTrainer` (shown in
  chapter 4) validates in eval mode under ``torch.no_grad()`` (this matters for models with
  dropout or batch norm; ours have neither, so their numbers do not change). It overrides
  ``Trainer._shared_loop``, a private method of torchmil 1.0.2 (pinned in pyproject.toml):
  check it again when raising torchmil.

The best validation model (lowest validation loss) is restored at the end.
:func:`trained_abmil` is the ABMIL of chapter 4, trained once and then loaded from the
cache by the chapters that use it.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import cast

import pandas as pd
import torch
import torchmetrics
import torchmetrics.classification
from torchmetrics.wrappers import LambdaInputTransformer
from torchmil.datasets import ProcessedMILDataset
from torchmil.utils import Trainer

from helpers.data import load_splits, make_loader
from helpers.fileio import atomic_path
from helpers.loop import fit
from helpers.models import ABMIL, MeanPoolMIL, as_mil_model
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


# Defined in chapter 4 ("Training with torchmil's Trainer"): the chapter shows this class;
# tests/test_models.py::test_chapter_4_shows_the_package_code holds the two equal.
class EvalTrainer(Trainer):
    """torchmil's Trainer, but validation and test run in eval mode without gradients."""

    def _shared_loop(self, dataloader, epoch=0, mode="train"):
        if mode == "train":
            return super()._shared_loop(dataloader, epoch=epoch, mode=mode)
        # Trainer._shared_loop calls self.model.train() first: make that call set eval mode.
        wrapper = self.model
        # an instance attribute that hides the method for this pass (deleted below)
        wrapper.train = lambda mode=True: torch.nn.Module.train(wrapper, False)  # pyright: ignore[reportAttributeAccessIssue]
        try:
            with torch.no_grad():
                return super()._shared_loop(dataloader, epoch=epoch, mode=mode)
        finally:
            del wrapper.train
            wrapper.train(True)


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
    patience: int | None = None,
) -> tuple[torch.nn.Module, pd.DataFrame]:
    """Train ``model`` with ``torchmil.utils.Trainer`` (Adam); keep the best validation weights.

    Validation runs in eval mode without gradients (see the module docstring); the best
    epoch is the one with the lowest validation loss; ``patience`` is ``Trainer``'s
    ``early_stop_patience`` (stop after that many epochs in a row without a lower one).

    Returns ``(model, history)``: the model (best weights loaded, in eval mode, on ``device``)
    and one row of train/val loss and metrics per epoch, plus ``seconds`` per epoch.
    """
    device = torch.device(device) if device is not None else get_device()
    seed_everything(seed)
    model = model.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    history = _History()
    # torchmil types device as a str (it only calls .to(device)) and patience as an int,
    # though None is its documented "no early stopping"
    trainer = EvalTrainer(
        model=as_mil_model(model),
        optimizer=optimizer,
        metrics_dict=binary_metrics(device),
        obj_metric="loss",
        obj_metric_mode="min",
        device=device,  # pyright: ignore[reportArgumentType]
        logger=history,
        disable_pbar=not progress,
        verbose=False,
        early_stop_patience=patience,  # pyright: ignore[reportArgumentType]
    )
    start = time.perf_counter()
    trainer.train(max_epochs=epochs, train_dataloader=train_loader, val_dataloader=val_loader)
    table = history.table()
    table["seconds"] = (time.perf_counter() - start) / max(len(table), 1)
    best = trainer.get_best_model().to(device).eval()
    return best, table


def cache_dir(cfg: Settings) -> Path:
    """Where trained weights are kept: ``MIL_BOOK_MODELS_DIR`` if set, else next to the data
    (``<job_dir>/../models``), else (a read-only data folder) ``~/.cache/mil-book/models``."""
    if os.environ.get("MIL_BOOK_MODELS_DIR"):
        return Path(os.environ["MIL_BOOK_MODELS_DIR"]).expanduser()
    beside = cfg.job_dir.parent / "models"
    if os.access(beside if beside.exists() else cfg.job_dir.parent, os.W_OK):
        return beside
    return Path.home() / ".cache" / "mil-book" / "models"


def _load_cached(path: Path, model: torch.nn.Module) -> pd.DataFrame | None:
    """Load the weights cached at ``path`` into ``model``; return the history they were
    trained with, or ``None`` (with a warning naming the file) when the entry is damaged:
    truncated, empty, not a weights file, or weights of another architecture. A damaged
    entry is trained again and replaced."""
    try:
        saved = torch.load(path, map_location="cpu", weights_only=False)
        model.load_state_dict(saved["state_dict"])
        return pd.DataFrame(saved["history"])
    except Exception as exc:  # noqa: BLE001 - any unreadable entry: train again
        warnings.warn(
            f"the cached weights {path} are damaged ({type(exc).__name__}: {exc}); training "
            "again, and the entry will be replaced.",
            stacklevel=3,
        )
        return None


def cache_problem(folder: Path) -> str | None:
    """Why trained weights cannot be saved in ``folder`` (a file, or not writable), or
    ``None``; checked before training, so that a long training is not lost at the end."""
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        return f"{probe} is a file, not a folder"
    if not os.access(probe, os.W_OK | os.X_OK):
        return f"{probe} is not writable"
    return None


def _save_cached(path: Path, model: torch.nn.Module, history: pd.DataFrame) -> None:
    """Save the trained weights to ``path`` atomically; on failure (read-only folder, full
    disk) warn, naming the file: the model stays in memory, only the cache entry is lost."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    try:
        with atomic_path(path) as tmp:  # per-process temporary file: runs never clash
            torch.save({"state_dict": state, "history": history.to_dict("list")}, tmp)
    except (OSError, RuntimeError) as exc:  # torch.save reports some write errors as such
        warnings.warn(
            f"could not cache the trained weights in {path} ({exc}); the model is kept in "
            "memory for this session. Set MIL_BOOK_MODELS_DIR to a writable folder to cache "
            "it.",
            stacklevel=3,
        )


# Bag entries that training never reads (the patch labels, only used for evaluation).
UNTRAINED_KEYS = frozenset({"y_inst"})


def data_fingerprint(dataset) -> str:
    """A hash of every bag of ``dataset``: its name and the bytes, dtype and shape of each
    tensor training can read (features ``X``, label ``Y``, ``coords``, ``adj``, ...).

    Replacing a features file, rebuilding the cohort with another seed or editing a label
    changes it, so weights cached for other data are never loaded. The patch labels
    ``y_inst`` (see :data:`UNTRAINED_KEYS`) are left out: no model of the book trains on
    them, so adding or correcting patch labels keeps the cached weights.
    """
    digest = hashlib.sha256()
    names = list(dataset.get_bag_names()) if hasattr(dataset, "get_bag_names") else []
    for i in range(len(dataset)):
        bag = dataset[i]
        digest.update(f"bag {names[i] if i < len(names) else i}".encode())
        for key in sorted(k for k in bag.keys() if k not in UNTRAINED_KEYS):
            value = bag[key]
            if not isinstance(value, torch.Tensor):
                digest.update(f"{key}={value!r}".encode())
                continue
            parts = [value]
            if value.layout != torch.strided:  # sparse adjacency: its indices and values
                value = value.coalesce()
                parts = [value.indices(), value.values()]
            for t in parts:
                t = t.detach().cpu().contiguous()
                digest.update(f"{key} {t.dtype} {tuple(t.shape)}".encode())
                digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


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

    ``make_model`` is called after seeding with ``train_kwargs["seed"]`` (default 0), so the
    initial weights do not depend on what ran before. The cache key covers the data
    (encoder, slide names and :func:`data_fingerprint` of both datasets: the features and
    labels themselves), the training loader (batch size, shuffling and its seed), the
    model's architecture and the training settings, so a change in any of them trains
    afresh; ``retrain=True`` always trains. It trains with :func:`helpers.loop.fit`, which
    makes ``Trainer``'s steps without its per-step bookkeeping and gives the weights and
    history that :func:`train_model` gives, faster. Returns ``(model, history)`` (a loaded
    model keeps the history of the run that trained it).
    """
    device = torch.device(device) if device is not None else get_device()
    seed_everything(train_kwargs.get("seed", 0))
    model = make_model()
    path = cache_path(cfg, name, model, train_loader, val_loader, train_kwargs)
    if path.exists() and not retrain:
        history = _load_cached(path, model)
        if history is not None:
            return model.to(device).eval(), history
        seed_everything(train_kwargs.get("seed", 0))  # the same initial weights as a first run
        model = make_model()
    problem = cache_problem(path.parent)
    if problem:
        warnings.warn(
            f"trained weights cannot be cached in {path.parent} ({problem}; "
            "MIL_BOOK_MODELS_DIR sets the folder): the model will be trained and kept in "
            "memory only.",
            stacklevel=2,
        )
    # the Trainer's steps without its per-step bookkeeping: the same weights, faster
    model, history = fit(
        model,
        train_loader,
        val_loader,
        device=device,
        metrics_dict=binary_metrics(device),
        **train_kwargs,
    )
    if not problem:
        _save_cached(path, model, history)
    return model, history


def cache_path(
    cfg: Settings,
    name: str,
    model: torch.nn.Module,
    train_loader: torch.utils.data.DataLoader,
    val_loader: torch.utils.data.DataLoader,
    train_kwargs: dict,
) -> Path:
    """Where :func:`train_or_load` keeps ``name`` trained with these settings (its docstring
    says what the key covers); ``model`` is the freshly built model (its ``repr`` counts)."""
    generator = getattr(train_loader, "generator", None)
    # torchmil datasets (helpers.data.load_splits); torch types a loader's as any Dataset
    train = cast(ProcessedMILDataset, train_loader.dataset)
    val = cast(ProcessedMILDataset, val_loader.dataset)
    key = json.dumps(
        {
            "name": name,
            "data": [cfg.source, str(cfg.trident_dir), cfg.encoder],
            "train": list(train.get_bag_names()),
            "val": list(val.get_bag_names()),
            "content": [data_fingerprint(train), data_fingerprint(val)],
            "loader": [
                train_loader.batch_size,
                type(train_loader.sampler).__name__,
                generator.initial_seed() if generator is not None else None,
            ],
            "model": repr(model),
            "kwargs": sorted((k, repr(v)) for k, v in train_kwargs.items()),
        },
        sort_keys=True,
    )
    digest = hashlib.sha1(key.encode()).hexdigest()[:12]
    return cache_dir(cfg) / f"{name}-{digest}.pt"


# The ABMIL of chapters 4 to 6: one place for its settings, so every chapter gets the same
# model (trained by the first chapter that asks for it, loaded by the others).
ABMIL_SETTINGS = {"att_dim": 128, "hidden_dim": 64}
# (the best validation epoch comes within the first ten on the demo; `patience` stops 20
# epochs after it, with the weights that all 100 epochs would keep)
TRAIN_SETTINGS = {"epochs": 100, "patience": 20, "lr": 1e-3, "weight_decay": 1e-4, "seed": 0}
BATCH_SIZE = 1


def trained_abmil(
    cfg: Settings, splits=None, device: torch.device | str | None = None
) -> tuple[torch.nn.Module, pd.DataFrame]:
    """Chapter 4's ABMIL (``helpers.models.ABMIL``), trained or loaded with :func:`train_or_load`.

    Arguments:
        cfg: the settings of ``helpers.settings.setup()``.
        splits: ``(train, val, test)`` from ``helpers.data.load_splits(cfg)`` (loaded when
            ``None``); only ``train`` and ``val`` are used.
        device: where the model goes (default ``get_device()``).

    Returns ``(model, history)``, the model in eval mode on ``device``. The settings are
    :data:`ABMIL_SETTINGS`, :data:`TRAIN_SETTINGS` and :data:`BATCH_SIZE`; the name is
    ``"abmil"``.
    """
    train, val, _ = splits if splits is not None else load_splits(cfg)
    in_dim = int(train[0]["X"].shape[-1])
    return train_or_load(
        cfg,
        "abmil",
        lambda: ABMIL(in_dim, **ABMIL_SETTINGS),
        make_loader(train, BATCH_SIZE, shuffle=True, seed=TRAIN_SETTINGS["seed"]),
        make_loader(val, batch_size=1),
        device=device,
        **TRAIN_SETTINGS,
    )


def trained_meanpool(
    cfg: Settings, splits=None, device: torch.device | str | None = None
) -> tuple[torch.nn.Module, pd.DataFrame]:
    """Chapter 5's mean-pooling baseline (``helpers.models.MeanPoolMIL``), trained or loaded.

    The same data, loaders and :data:`TRAIN_SETTINGS` as :func:`trained_abmil`, with
    ``hidden_dim=ABMIL_SETTINGS["hidden_dim"]``; the name is ``"meanpool"`` (chapters 5 and 6).
    Returns ``(model, history)``, the model in eval mode on ``device``.
    """
    train, val, _ = splits if splits is not None else load_splits(cfg)
    in_dim = int(train[0]["X"].shape[-1])
    return train_or_load(
        cfg,
        "meanpool",
        lambda: MeanPoolMIL(in_dim, hidden_dim=ABMIL_SETTINGS["hidden_dim"]),
        make_loader(train, BATCH_SIZE, shuffle=True, seed=TRAIN_SETTINGS["seed"]),
        make_loader(val, batch_size=1),
        device=device,
        **TRAIN_SETTINGS,
    )
