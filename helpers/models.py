"""The book's own MIL models: ABMIL written from scratch (chapter 4) and a mean-pooling baseline.

Both follow torchmil's model interface, so ``torchmil.utils.Trainer`` trains them:

- ``forward(X, mask=None, return_att=False)`` -> bag logits ``(batch_size,)``;
- ``compute_loss(Y, X, mask=None)`` -> ``(logits, {"BCEWithLogitsLoss": loss})``;
- ``predict(X, mask=None, return_inst_pred=True)`` -> ``(logits, instance scores)`` with
  instance scores of shape ``(batch_size, bag_size)``.

``ABMIL`` has the same layers, in the same places, as ``torchmil.models.ABMIL``. torchmil
wraps two of them (``pool.fc1`` and ``classifier``) in its ``LazyLinear``, which adds
``.module`` to their parameter names; :func:`to_torchmil_state_dict` does that renaming, so a
state dict moves between the two (chapter 4 checks that they then give the same outputs).
"""

from __future__ import annotations

import torch
from torch import nn


def instance_encoder(in_dim: int, hidden_dim: int | None) -> nn.Module:
    """The per-instance network ``h_i = NeuralNet(x_i)``: ``Linear + ReLU``, or the identity."""
    if hidden_dim is None:
        return nn.Identity()
    return nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.ReLU())


def masked_softmax(scores: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Softmax over the bag of ``scores`` ``(batch_size, bag_size)``; padded slots get 0."""
    if mask is not None:
        scores = scores.masked_fill(mask == 0, float("-inf"))
    return torch.softmax(scores, dim=1)


# torchmil.models.ABMIL's LazyLinear layers keep their nn.Linear in a ``module`` attribute.
_TORCHMIL_LAZY = ("pool.fc1.", "pool.fc_gated.", "classifier.")


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


class AttentionPool(nn.Module):
    """Attention pooling of Ilse et al. (2018).

    ``f_i = w^T tanh(W h_i + b)``, ``s = softmax(f)`` over the real instances of the bag and
    ``z = sum_i s_i h_i``.

    Shapes: ``H`` ``(batch_size, bag_size, dim)``, ``mask`` ``(batch_size, bag_size)`` ->
    ``z`` ``(batch_size, dim)`` and, if asked, ``f`` ``(batch_size, bag_size)`` (before softmax).
    """

    def __init__(self, in_dim: int, att_dim: int = 128):
        super().__init__()
        self.fc1 = nn.Linear(in_dim, att_dim)
        self.fc2 = nn.Linear(att_dim, 1, bias=False)

    def forward(
        self, H: torch.Tensor, mask: torch.Tensor | None = None, return_att: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        f = self.fc2(torch.tanh(self.fc1(H))).squeeze(-1)  # (batch_size, bag_size)
        s = masked_softmax(f, mask)  # (batch_size, bag_size)
        z = torch.bmm(s.unsqueeze(1), H).squeeze(1)  # (batch_size, dim)
        return (z, f) if return_att else z


class _BagClassifier(nn.Module):
    """Shared loss and prediction for single-logit bag classifiers."""

    criterion = nn.BCEWithLogitsLoss()

    def compute_loss(
        self, Y: torch.Tensor, X: torch.Tensor, mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``Y`` ``(batch_size,)``, ``X`` ``(batch_size, bag_size, in_dim)`` -> logits, losses."""
        logits = self.forward(X, mask)
        loss = self.criterion(logits.float(), Y.reshape(logits.shape).float())
        return logits, {"BCEWithLogitsLoss": loss}

    def predict(
        self, X: torch.Tensor, mask: torch.Tensor | None = None, return_inst_pred: bool = True
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Bag logits ``(batch_size,)`` and instance scores ``(batch_size, bag_size)``."""
        logits, inst = self.forward(X, mask, return_att=True)
        return (logits, inst) if return_inst_pred else logits


class ABMIL(_BagClassifier):
    """Attention-based MIL written from scratch.

    Arguments:
        in_dim: instance feature dimension ``D``.
        att_dim: attention dimension.
        hidden_dim: width of the per-instance network (``None``: use the features as they are).

    Shapes: ``X`` ``(batch_size, bag_size, in_dim)``, ``mask`` ``(batch_size, bag_size)``
    (1 = real instance, 0 = padding) -> logits ``(batch_size,)``; with ``return_att`` also
    the attention scores ``f`` ``(batch_size, bag_size)`` before the softmax.
    """

    def __init__(self, in_dim: int, att_dim: int = 128, hidden_dim: int | None = 64):
        super().__init__()
        self.feat_ext = instance_encoder(in_dim, hidden_dim)
        dim = hidden_dim or in_dim
        self.pool = AttentionPool(dim, att_dim)
        self.classifier = nn.Linear(dim, 1)

    def forward(
        self, X: torch.Tensor, mask: torch.Tensor | None = None, return_att: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        H = self.feat_ext(X)  # (batch_size, bag_size, dim)
        z, f = self.pool(H, mask, return_att=True)  # (batch_size, dim), (batch_size, bag_size)
        logits = self.classifier(z).squeeze(-1)  # (batch_size,)
        return (logits, f) if return_att else logits


class MeanPoolMIL(_BagClassifier):
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
