"""The book's own MIL models: ABMIL written from scratch (chapter 4) and a mean-pooling baseline.

Both follow torchmil's model interface, so ``torchmil.utils.Trainer`` trains them:

- ``forward(X, mask=None, return_att=False)`` -> bag logits ``(batch_size,)``;
- ``compute_loss(Y, X, mask=None)`` -> ``(logits, {"BCEWithLogitsLoss": loss})``;
- ``predict(X, mask=None, return_inst_pred=True)`` -> ``(logits, instance scores)`` with
  instance scores of shape ``(batch_size, bag_size)``.

``ABMIL`` has the same layers, in the same places, as ``torchmil.models.ABMIL``. torchmil
wraps two of them (``pool.fc1`` and ``classifier``) in its ``LazyLinear``, which adds
``.module`` to their parameter names; :func:`to_torchmil_state_dict` does that renaming, so a
state dict moves between the two (chapter 4 checks that they then give the same outputs);
:func:`torchmil_abmil` builds torchmil's model with such weights (chapters 4 and 6).

Where the reader meets this code: ``instance_encoder``, ``masked_softmax``,
``AttentionPool`` and ``ABMIL`` are *defined in chapter 4* (book/04-abmil.md, section "ABMIL,
one step at a time"), which writes them cell by cell; this module holds the same code so
that later chapters import it instead of copying it (d2l's "defined in chapter N").
``tests/test_models.py`` checks that the chapter's definitions and these are the same
code (their syntax trees, docstrings included), so the two cannot drift apart.
"""

from __future__ import annotations

from typing import cast

import torch
import torch.nn.functional as F
import torchmil.models
from torch import nn

# ---------------------------------------------------------------------------------------
# Defined in chapter 4 ("ABMIL, one step at a time"): instance_encoder, masked_softmax,
# AttentionPool and ABMIL are the code the chapter shows, character for character up to
# formatting; tests/test_models.py::test_chapter_4_shows_the_package_code holds them equal.
# Edit both together.
# ---------------------------------------------------------------------------------------


def instance_encoder(in_dim: int, hidden_dim: int | None) -> nn.Module:
    """The instance network h_n: ``Linear(in_dim, hidden_dim) + ReLU``, or the identity.

    Shapes: ``(..., in_dim)`` -> ``(..., hidden_dim)`` (``(..., in_dim)`` when ``None``).
    """
    if hidden_dim is None:
        return nn.Identity()
    return nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.ReLU())


def masked_softmax(scores: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Softmax over dim 1 of ``scores`` (batch_size, bag_size); padded slots get weight 0."""
    if mask is not None:
        scores = scores.masked_fill(mask == 0, float("-inf"))
    return torch.softmax(scores, dim=1)


class AttentionPool(nn.Module):
    """Attention pooling (Ilse et al., 2018): z = sum_n s_n h_n, s = masked softmax of f.

    f_n = w^T tanh(V h_n + c). Shapes: H (batch_size, bag_size, P), mask (batch_size,
    bag_size) -> z (batch_size, P) and, with return_att, f (batch_size, bag_size).
    """

    def __init__(self, in_dim: int, att_dim: int = 128):
        super().__init__()
        self.fc1 = nn.Linear(in_dim, att_dim)  # V and c
        self.fc2 = nn.Linear(att_dim, 1, bias=False)  # w

    def forward(self, H, mask=None, return_att=False):
        f = self.fc2(torch.tanh(self.fc1(H))).squeeze(-1)  # (batch_size, bag_size)
        s = masked_softmax(f, mask)  # (batch_size, bag_size)
        z = torch.bmm(s.unsqueeze(1), H).squeeze(1)  # (batch_size, P)
        return (z, f) if return_att else z


class ABMIL(nn.Module):
    """Attention-based MIL (Ilse et al., 2018) with torchmil's model interface.

    Shapes: X (batch_size, bag_size, in_dim), mask (batch_size, bag_size) with 1 for a real
    instance and 0 for padding -> logits (batch_size,); predict() and forward(...,
    return_att=True) also give the scores f (batch_size, bag_size), before the softmax.
    hidden_dim=None uses the features as they are (no instance network).
    """

    def __init__(self, in_dim: int, att_dim: int = 128, hidden_dim: int | None = 64):
        super().__init__()
        self.feat_ext = instance_encoder(in_dim, hidden_dim)  # h_n
        dim = hidden_dim or in_dim  # P
        self.pool = AttentionPool(dim, att_dim)
        self.classifier = nn.Linear(dim, 1)  # u and b

    def forward(self, X, mask=None, return_att=False):
        H = self.feat_ext(X)  # (batch_size, bag_size, P)
        z, f = self.pool(H, mask, return_att=True)  # (batch_size, P), (batch_size, bag_size)
        logits = self.classifier(z).squeeze(-1)  # (batch_size,)
        return (logits, f) if return_att else logits

    def compute_loss(self, Y, X, mask=None):
        logits = self.forward(X, mask)  # the logits alone (the pair needs return_att=True)
        loss = F.binary_cross_entropy_with_logits(logits, Y.reshape(logits.shape).float())  # pyright: ignore[reportArgumentType, reportAttributeAccessIssue]
        return logits, {"BCEWithLogitsLoss": loss}

    def predict(self, X, mask=None, return_inst_pred=True):
        logits, f = self.forward(X, mask, return_att=True)
        return (logits, f) if return_inst_pred else logits


# ---------------------------------------------------------------------------------------
# End of the code of chapter 4.
# ---------------------------------------------------------------------------------------


# torchmil.models.ABMIL's LazyLinear layers keep their nn.Linear in a ``module`` attribute.
_TORCHMIL_LAZY = ("pool.fc1.", "pool.fc_gated.", "classifier.")


def as_mil_model(model: nn.Module) -> torchmil.models.MILModel:
    """``model`` as torchmil's ``MILModelWrapper`` and ``Trainer`` type what they take.

    Arguments:
        model: A module with torchmil's methods (``forward``, ``compute_loss``, ``predict``
            taking the bag's keys), such as :class:`ABMIL`: all that torchmil calls, though it
            types a ``MILModel``.

    Returns:
        ``model`` itself, typed as a ``MILModel``.
    """
    return cast(torchmil.models.MILModel, model)


def to_torchmil_state_dict(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename an :class:`ABMIL` state dict for ``torchmil.models.ABMIL`` (``.module`` added).

    ``pool.fc1.weight`` -> ``pool.fc1.module.weight``, ``classifier.bias`` ->
    ``classifier.module.bias``; the other keys are kept. The tensors are not copied.
    """
    out = {}
    for key, value in state_dict.items():
        prefix = next((p for p in _TORCHMIL_LAZY if key.startswith(p)), None)
        if prefix is not None and not key.startswith(prefix + "module."):
            key = f"{prefix}module.{key[len(prefix) :]}"
        out[key] = value
    return out


def torchmil_abmil(
    state_dict: dict[str, torch.Tensor],
    in_dim: int,
    att_dim: int = 128,
    hidden_dim: int | None = 64,
    gated: bool = False,
) -> nn.Module:
    """``torchmil.models.ABMIL`` with the weights of an :class:`ABMIL` (chapters 4 and 6).

    Builds torchmil's model with the same instance network (:func:`instance_encoder`) and
    attention size, and loads ``state_dict`` renamed by :func:`to_torchmil_state_dict`
    (strictly: a key missing on either side raises ``RuntimeError``). ``gated=True`` for a
    state dict with a gate layer ``pool.fc_gated``. Returns the model on the CPU, in eval
    mode; move it with ``.to(device)``.
    """
    model = torchmil.models.ABMIL(
        in_shape=(in_dim,),
        att_dim=att_dim,
        gated=gated,
        feat_ext=instance_encoder(in_dim, hidden_dim),
    )
    model.load_state_dict(to_torchmil_state_dict(state_dict))
    return model.eval()


class MeanPoolMIL(nn.Module):
    """The baseline without attention: every instance counts the same.

    ``z = mean_i h_i`` over the real instances, ``logit = c^T z + b``. Because the classifier
    is linear, ``logit = mean_i (c^T h_i) + b``: the instance scores returned with
    ``return_att`` are these per-instance contributions ``c^T h_i``.
    """

    def __init__(self, in_dim: int, hidden_dim: int | None = 64):
        super().__init__()
        self.feat_ext = instance_encoder(in_dim, hidden_dim)
        self.classifier = nn.Linear(hidden_dim or in_dim, 1)

    def forward(
        self, X: torch.Tensor, mask: torch.Tensor | None = None, return_att: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        H = self.feat_ext(X)  # (batch_size, bag_size, dim)
        if mask is None:
            mask = torch.ones(H.shape[:2], device=H.device)
        w = mask.to(H.dtype).unsqueeze(-1)  # (batch_size, bag_size, 1)
        z = (H * w).sum(1) / w.sum(1).clamp(min=1)  # (batch_size, dim)
        logits = self.classifier(z).squeeze(-1)
        if not return_att:
            return logits
        inst = (H @ self.classifier.weight.T).squeeze(-1)  # (batch_size, bag_size)
        return logits, inst

    # the loss and the prediction of ABMIL: both only call forward()
    compute_loss = ABMIL.compute_loss
    predict = ABMIL.predict
