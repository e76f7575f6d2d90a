"""Predictions in eval mode, bag-level metrics, and instance scores ready to draw."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from sklearn import metrics as skm
from torchmil.models import MILModelWrapper

from helpers.data import make_loader
from helpers.models import as_mil_model
from helpers.scores import minmax


@dataclass
class Predictions:
    """What a model says about every bag of a dataset (in the dataset's order).

    ``prob`` is the bag probability ``(n_bags,)``; ``inst_scores[i]`` the raw instance
    scores of bag ``i`` ``(bag_size_i,)`` (pre-softmax attention for ABMIL) and
    ``attention[i]`` the same scores normalised per bag over its real instances (softmax),
    ``y_inst[i]`` its patch labels (for evaluation only; ``y_inst`` is ``None`` when the
    dataset has no patch labels), ``grid_xy[i]`` its ``(bag_size_i, 2)`` patch-grid cells
    ``(x, y)`` (level-0 corners // ``patch_size_level0``; torchmil's batch key ``coords``).
    ``tumor_fraction[i]`` is the tumour fraction of each patch and ``patch_um[i]`` a patch's
    side in microns (``None`` when unknown), both for the FROC's lesion rules
    (:mod:`helpers.froc`); ``tumor_fraction`` is ``None`` when the patch labels lack them.
    """

    names: list[str]
    y: np.ndarray
    prob: np.ndarray
    inst_scores: list[np.ndarray]
    attention: list[np.ndarray]
    y_inst: list[np.ndarray] | None
    grid_xy: list[np.ndarray]
    tumor_fraction: list[np.ndarray] | None = None
    patch_um: list[float | None] | None = None

    def table(self) -> pd.DataFrame:
        return pd.DataFrame({"name": self.names, "y": self.y, "prob": self.prob})


@torch.no_grad()
def predict(
    model: torch.nn.Module, dataset, device: torch.device | str | None = None
) -> Predictions:
    """Run ``model.predict`` on every bag of ``dataset`` in eval mode, without gradients.

    The call goes through torchmil's ``MILModelWrapper``, which passes the batch entries a
    model's ``predict`` names (``X``, ``mask``, ``adj``, ...), so any torchmil model works.
    Bags go one at a time, so no padding reaches the instance scores; everything is moved
    back to the CPU as NumPy arrays.
    """
    device = torch.device(device) if device is not None else next(model.parameters()).device
    model = model.to(device).eval()
    wrapped = MILModelWrapper(as_mil_model(model))
    names = list(dataset.get_bag_names())
    y: list[int] = []
    prob: list[float] = []
    inst_scores, attention, y_inst, grid_xy = [], [], [], []
    for batch in make_loader(dataset, batch_size=1):
        batch = batch.to(device)
        logits, inst = wrapped.predict(batch, return_inst_pred=True)
        real = batch["mask"][0].bool()
        scores = inst[0][real].float()
        _check_finite(names[len(prob)], logits, scores)
        y.append(int(batch["Y"][0]))
        prob.append(float(torch.sigmoid(logits.float())[0]))
        inst_scores.append(scores.cpu().numpy())
        attention.append(torch.softmax(scores, dim=0).cpu().numpy())
        if "y_inst" in batch.keys():
            y_inst.append(batch["y_inst"][0][real].cpu().numpy().astype(int))
        grid_xy.append(batch["coords"][0][real].cpu().numpy())
    labelled = len(y_inst) == len(names)  # else: no patch labels in this dataset
    out = Predictions(
        names=names,
        y=np.array(y),
        prob=np.array(prob),
        inst_scores=inst_scores,
        attention=attention,
        y_inst=y_inst if labelled else None,
        grid_xy=grid_xy,
    )
    fractions = getattr(dataset, "tumor_fractions", None) or {}
    if out.y_inst is not None and all(n in fractions for n in out.names):
        out.tumor_fraction = [np.asarray(fractions[n], dtype=np.float64) for n in out.names]
        if any(len(f) != len(s) for f, s in zip(out.tumor_fraction, out.inst_scores, strict=True)):
            out.tumor_fraction = None
    sizes = getattr(dataset, "patch_um", None) or {}
    if any(sizes.get(n) is not None for n in out.names):
        out.patch_um = [sizes.get(n) for n in out.names]
    return out


def _check_finite(name: str, logits: torch.Tensor, scores: torch.Tensor) -> None:
    """A NaN bag logit or instance score is an error naming the slide (it would give a bag
    of zero scores: a blank heatmap, a FROC of 0 and a patch AUROC of 0.5, silently)."""
    bad = ~torch.isfinite(scores)
    if bad.any() or not torch.isfinite(logits).all():
        raise ValueError(
            f"the model gives {int(bad.sum())} NaN or infinite instance score(s) for slide "
            f"{name} (patches {torch.nonzero(bad).flatten()[:5].tolist()}) and bag logit "
            f"{logits.flatten().tolist()}: check this slide's features (helpers.data.load_dataset "
            "refuses non-finite ones) and the model's weights (a training that diverged?)."
        )


def bag_metrics(y: np.ndarray, prob: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    """Accuracy, balanced accuracy, F1 (at ``threshold``) and AUROC of bag predictions."""
    y = np.asarray(y).astype(int)
    pred = (np.asarray(prob) >= threshold).astype(int)
    result = {
        "accuracy": skm.accuracy_score(y, pred),
        "balanced_accuracy": skm.balanced_accuracy_score(y, pred),
        # sklearn takes 0, 1, nan or "warn"; it is typed by its default, "warn"
        "f1": skm.f1_score(y, pred, zero_division=0),  # pyright: ignore[reportArgumentType]
        "auroc": skm.roc_auc_score(y, prob) if len(np.unique(y)) == 2 else float("nan"),
    }
    return {k: float(v) for k, v in result.items()}


def require_patch_labels(preds: Predictions) -> list[np.ndarray]:
    """``preds.y_inst``, or a ``ValueError`` saying how to make patch labels."""
    if preds.y_inst is None:
        raise ValueError(
            "these predictions have no patch labels (the dataset was loaded without a "
            "patch_labels folder); make them with `python -m helpers.labels` (README step 3)."
        )
    return preds.y_inst


def slide_patch_auroc(scores: np.ndarray, y_inst: np.ndarray) -> float:
    """AUROC of one slide's instance scores against its patch labels; NaN when the slide
    has only one class of patch (a normal slide, or a tumour slide whose lesion is too
    small to make any patch positive), where the AUROC is undefined."""
    y_inst = np.asarray(y_inst).astype(int)
    if len(np.unique(y_inst)) < 2:
        return float("nan")
    return float(skm.roc_auc_score(y_inst, scores))


def patch_auroc(preds: Predictions, positive_bags_only: bool = True) -> float:
    """Patch-level AUROC of the instance scores against the patch labels.

    Scores are min-max normalised within each bag first (attention is relative to its bag),
    then pooled over the bags (by default the tumour bags, where both classes occur; a
    tumour bag with no positive patch still adds its patches as negatives). Raises a
    ``ValueError`` without patch labels, without a tumour bag, or when the pooled patches
    are all of one class.
    """
    y_inst = require_patch_labels(preds)
    scores, labels = [], []
    for name, s, yi, y in zip(preds.names, preds.inst_scores, y_inst, preds.y, strict=True):
        if positive_bags_only and y != 1:
            continue
        try:
            scores.append(minmax(s))
        except ValueError as exc:
            raise ValueError(f"slide {name}: {exc}") from None
        labels.append(yi)
    if not labels:
        raise ValueError("patch AUROC needs at least one tumour bag (none in these predictions)")
    labels_all = np.concatenate(labels)
    if len(np.unique(labels_all)) < 2:
        raise ValueError(
            "patch AUROC needs both tumour and normal patches; the tumour slides here have "
            "no tumour patch (lesions smaller than half a patch?)"
        )
    return float(skm.roc_auc_score(labels_all, np.concatenate(scores)))
