"""helpers.models, helpers.training and helpers.evaluation: shapes, masking, torchmil parity,
metrics on hand-made cases, predictions on demo slides and the weight cache."""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torchmetrics
import torchmil.models as tm
from tensordict import TensorDict
from torch import nn

import helpers.loop as loop
import helpers.models as models_module
import helpers.training as training
from helpers.data import collate, load_dataset, make_loader, read_split
from helpers.evaluation import Predictions, bag_metrics, patch_auroc, predict
from helpers.models import (
    ABMIL,
    AttentionPool,
    MeanPoolMIL,
    instance_encoder,
    masked_softmax,
    to_torchmil_state_dict,
    torchmil_abmil,
)
from helpers.scores import minmax
from helpers.training import binary_metrics, train_model, train_or_load

D = 6  # feature dimension of the synthetic bags


def padded_batch(sizes: list[int], seed: int = 0) -> tuple[list[torch.Tensor], TensorDict]:
    """Random bags of ``sizes`` and their collated batch, the padding filled with junk.

    ``collate_fn`` pads with zeros; large random values in the padded rows make sure that a
    model that looks at them gives a different answer.
    """
    g = torch.Generator().manual_seed(seed)
    bags = [torch.randn(n, D, generator=g) for n in sizes]
    batch = collate([TensorDict({"X": x, "Y": torch.ones(1)}) for x in bags])
    junk = 50 * torch.randn(batch["X"].shape, generator=g)
    batch["X"] = torch.where(batch["mask"].bool().unsqueeze(-1), batch["X"], junk)
    return bags, batch


def models() -> dict[str, nn.Module]:
    torch.manual_seed(0)
    return {"abmil": ABMIL(D, att_dim=8, hidden_dim=5), "mean": MeanPoolMIL(D, hidden_dim=5)}


# ----------------------------------------------------------------------------- models


@pytest.mark.parametrize("name", ["abmil", "mean"])
def test_shapes(name):
    model = models()[name]
    _, batch = padded_batch([3, 7, 5])
    logits = model(batch["X"], batch["mask"])
    assert logits.shape == (3,)
    logits2, inst = model.predict(batch["X"], batch["mask"], return_inst_pred=True)
    assert inst.shape == (3, 7)
    torch.testing.assert_close(logits2, logits)
    assert model.predict(batch["X"], batch["mask"], return_inst_pred=False).shape == (3,)
    out, losses = model.compute_loss(torch.tensor([0.0, 1.0, 1.0]), batch["X"], batch["mask"])
    assert out.shape == (3,)
    assert list(losses) == ["BCEWithLogitsLoss"]
    assert losses["BCEWithLogitsLoss"].shape == ()


def test_compute_loss_accepts_column_labels():
    # TridentWSIDataset labels collated without helpers.data.collate are (batch_size, 1).
    model = models()["abmil"]
    _, batch = padded_batch([3, 4])
    y = torch.tensor([0.0, 1.0])
    _, flat = model.compute_loss(y, batch["X"], batch["mask"])
    _, column = model.compute_loss(y[:, None], batch["X"], batch["mask"])
    torch.testing.assert_close(flat["BCEWithLogitsLoss"], column["BCEWithLogitsLoss"])


def test_instance_encoder():
    assert isinstance(instance_encoder(D, None), nn.Identity)
    net = instance_encoder(D, 5)
    assert net(torch.randn(2, 3, D)).shape == (2, 3, 5)
    assert (net(torch.randn(2, 3, D)) >= 0).all()  # ReLU


def test_masked_softmax_gives_padding_zero_weight():
    scores = torch.tensor([[1.0, 2.0, 3.0], [0.5, 9.0, 9.0]])
    mask = torch.tensor([[1, 1, 1], [1, 0, 0]], dtype=torch.uint8)
    s = masked_softmax(scores, mask)
    torch.testing.assert_close(s[0], torch.softmax(scores[0], 0))
    torch.testing.assert_close(s[1], torch.tensor([1.0, 0.0, 0.0]))
    torch.testing.assert_close(masked_softmax(scores, None), torch.softmax(scores, 1))


def test_attention_pool_padding_gets_zero_attention():
    torch.manual_seed(0)
    pool = AttentionPool(D, att_dim=4)
    bags, batch = padded_batch([2, 6, 4])
    z, f = pool(batch["X"], batch["mask"], return_att=True)
    s = masked_softmax(f, batch["mask"])
    assert (s[batch["mask"] == 0] == 0).all()
    torch.testing.assert_close(s.sum(1), torch.ones(3))
    for i, x in enumerate(bags):  # z is the weighted mean of the real rows only
        s_i = torch.softmax(f[i, : len(x)], 0)
        torch.testing.assert_close(z[i], s_i @ x)


@pytest.mark.parametrize("name", ["abmil", "mean"])
def test_padding_does_not_change_the_output(name):
    model = models()[name]
    bags, batch = padded_batch([3, 8, 5])
    logits, inst = model.predict(batch["X"], batch["mask"])
    for i, x in enumerate(bags):
        alone, inst_alone = model.predict(x[None], torch.ones(1, len(x)))
        torch.testing.assert_close(logits[i], alone[0])
        torch.testing.assert_close(inst[i, : len(x)], inst_alone[0])
    # without the mask the junk padding does change the output: the check above can fail
    assert not torch.allclose(model(batch["X"]), logits, atol=1e-3)


def test_mask_none_means_every_instance_is_real():
    for model in models().values():
        _, batch = padded_batch([4, 4])
        torch.testing.assert_close(model(batch["X"]), model(batch["X"], batch["mask"]))


def test_abmil_matches_torchmil_with_the_same_state_dict():
    torch.manual_seed(0)
    ours = ABMIL(D, att_dim=8, hidden_dim=5)
    theirs = tm.ABMIL(in_shape=(D,), att_dim=8, feat_ext=instance_encoder(D, 5))
    with pytest.raises(RuntimeError):  # torchmil's LazyLinear adds ".module" to two names
        theirs.load_state_dict(ours.state_dict())
    theirs.load_state_dict(to_torchmil_state_dict(ours.state_dict()))
    _, batch = padded_batch([3, 7, 5])
    a_logits, a_att = ours.predict(batch["X"], batch["mask"])
    b_logits, b_att = theirs.predict(batch["X"], batch["mask"])
    torch.testing.assert_close(a_logits, b_logits)
    real = batch["mask"].bool()
    torch.testing.assert_close(a_att[real], b_att[real])
    y = torch.tensor([1.0, 0.0, 1.0])
    torch.testing.assert_close(
        ours.compute_loss(y, batch["X"], batch["mask"])[1]["BCEWithLogitsLoss"],
        theirs.compute_loss(y, batch["X"], batch["mask"])[1]["BCEWithLogitsLoss"],
    )


def test_to_torchmil_state_dict_renames_only_the_lazy_layers():
    sd = ABMIL(D, att_dim=8, hidden_dim=5).state_dict()
    renamed = to_torchmil_state_dict(sd)
    assert sorted(renamed) == sorted(
        [
            "feat_ext.0.weight",
            "feat_ext.0.bias",
            "pool.fc1.module.weight",
            "pool.fc1.module.bias",
            "pool.fc2.weight",
            "classifier.module.weight",
            "classifier.module.bias",
        ]
    )
    assert renamed["pool.fc1.module.weight"] is sd["pool.fc1.weight"]
    assert to_torchmil_state_dict(renamed) == renamed  # already renamed: unchanged


def test_abmil_without_instance_network_matches_torchmil():
    torch.manual_seed(1)
    ours = ABMIL(D, att_dim=4, hidden_dim=None)
    theirs = tm.ABMIL(in_shape=(D,), att_dim=4)
    theirs.load_state_dict(to_torchmil_state_dict(ours.state_dict()))
    _, batch = padded_batch([2, 5])
    torch.testing.assert_close(ours(batch["X"], batch["mask"]), theirs(batch["X"], batch["mask"]))


def test_torchmil_abmil_loads_our_weights():
    torch.manual_seed(2)
    for gated in (False, True):
        ours = ABMIL(D, att_dim=4, hidden_dim=5)
        if gated:  # the gate layer of Exercise 1 of chapter 4
            ours.pool.fc_gated = nn.Linear(5, 4)
        theirs = torchmil_abmil(ours.state_dict(), D, att_dim=4, hidden_dim=5, gated=gated)
        assert isinstance(theirs, tm.ABMIL) and not theirs.training
        assert set(theirs.state_dict()) == set(to_torchmil_state_dict(ours.state_dict()))
    with pytest.raises(RuntimeError):  # a gate the state dict does not have
        torchmil_abmil(ABMIL(D, att_dim=4, hidden_dim=5).state_dict(), D, 4, 5, gated=True)
    ours = ABMIL(D, att_dim=4, hidden_dim=5).eval()
    theirs = torchmil_abmil(ours.state_dict(), D, att_dim=4, hidden_dim=5)
    _, batch = padded_batch([3, 6])
    torch.testing.assert_close(ours(batch["X"], batch["mask"]), theirs(batch["X"], batch["mask"]))


BOOK = Path(__file__).resolve().parents[1] / "book"
CELL = re.compile(r"^```\{code-cell\}[^\n]*\n(.*?)^```\s*$", re.S | re.M)


def chapter_definitions(chapter: Path) -> dict[str, ast.AST]:
    """The top-level functions and classes defined in the code cells of a MyST chapter."""
    found: dict[str, ast.AST] = {}
    for body in CELL.findall(chapter.read_text()):
        lines = body.splitlines()
        if lines and lines[0] == "---":  # a YAML metadata block
            lines = lines[lines.index("---", 1) + 1 :]
        lines = [ln for ln in lines if not ln.startswith(":")]  # cell options
        # IPython magics (`%pip install ...`, also indented under an `if`) become `pass`
        lines = [ln[: len(ln) - len(ln.lstrip())] + "pass" if ln.lstrip().startswith("%")
                 else ln for ln in lines]  # fmt: skip
        for node in ast.parse("\n".join(lines)).body:
            if isinstance(node, ast.FunctionDef | ast.ClassDef):
                found[node.name] = node
    return found


def module_definitions(module) -> dict[str, ast.AST]:
    tree = ast.parse(inspect.getsource(module))
    return {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef | ast.ClassDef)}


@pytest.mark.parametrize(
    "module, names",
    [
        (models_module, ["instance_encoder", "masked_softmax", "AttentionPool", "ABMIL"]),
        (training, ["EvalTrainer"]),
        (loop, ["one_pass"]),
    ],
)
def test_chapter_4_shows_the_package_code(module, names):
    """Chapter 4 writes these definitions cell by cell; the package holds the same code
    (the same syntax tree, docstrings included: only comments and layout may differ)."""
    chapter = chapter_definitions(BOOK / "04-abmil.md")
    package = module_definitions(module)
    for name in names:
        assert name in chapter, f"chapter 4 no longer defines {name}"
        assert ast.dump(chapter[name]) == ast.dump(package[name]), (
            f"{name}: chapter 4 and {module.__name__} differ; edit both together"
        )


def test_chapter_definitions_sees_a_difference(tmp_path):
    """The comparison above can fail: one changed constant is a different tree."""
    source = (BOOK / "04-abmil.md").read_text()
    edited = tmp_path / "04.md"
    edited.write_text(source.replace("bias=False)  # w", "bias=True)  # w", 1))
    assert ast.dump(chapter_definitions(edited)["AttentionPool"]) != ast.dump(
        module_definitions(models_module)["AttentionPool"]
    )


def test_mean_pool_instance_scores_average_to_logit_minus_bias():
    model = models()["mean"]
    bags, batch = padded_batch([3, 9, 6])
    logits, inst = model.predict(batch["X"], batch["mask"])
    bias = model.classifier.bias[0]
    for i, x in enumerate(bags):
        torch.testing.assert_close(inst[i, : len(x)].mean(), logits[i] - bias)


# ----------------------------------------------------------------------------- metrics


def test_bag_metrics_hand_case():
    y = np.array([0, 0, 0, 1, 1])
    prob = np.array([0.1, 0.2, 0.7, 0.8, 0.3])  # predictions at 0.5: 0 0 1 1 0
    m = bag_metrics(y, prob)
    assert m["accuracy"] == pytest.approx(3 / 5)
    assert m["balanced_accuracy"] == pytest.approx((2 / 3 + 1 / 2) / 2)
    assert m["f1"] == pytest.approx(0.5)  # tp 1, fp 1, fn 1
    assert m["auroc"] == pytest.approx(5 / 6)  # 0.8 beats all 3 negatives, 0.3 beats 2
    assert all(isinstance(v, float) for v in m.values())


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
def test_bag_metrics_threshold_and_one_class():
    assert bag_metrics([1, 0], [0.5, 0.49])["accuracy"] == 1.0  # 0.5 counts as positive
    assert bag_metrics([1, 0], [0.6, 0.4], threshold=0.7)["accuracy"] == 0.5
    assert np.isnan(bag_metrics([1, 1], [0.6, 0.4])["auroc"])


def test_minmax():
    np.testing.assert_allclose(minmax([2.0, 4.0, 3.0]), [0.0, 1.0, 0.5])
    np.testing.assert_allclose(minmax([7.0, 7.0]), [0.0, 0.0])


def hand_predictions() -> Predictions:
    """Two tumour bags and one normal bag with raw scores on different scales."""
    scores = [np.array([0.0, 1.0, 2.0]), np.array([10.0, 20.0, 30.0]), np.array([5.0, 6.0])]
    y_inst = [np.array([0, 0, 1]), np.array([0, 1, 1]), np.array([0, 0])]
    return Predictions(
        names=["a", "b", "c"],
        y=np.array([1, 1, 0]),
        prob=np.array([0.9, 0.8, 0.2]),
        inst_scores=scores,
        attention=[np.exp(s) / np.exp(s).sum() for s in scores],
        y_inst=y_inst,
        grid_xy=[np.stack([np.arange(len(s)), np.zeros(len(s), int)], 1) for s in scores],
    )


def test_patch_auroc_hand_case():
    preds = hand_predictions()
    # per-bag min-max: a -> 0, .5, 1 and b -> 0, .5, 1; positives {1, .5, 1}, negatives
    # {0, .5, 0}: 3 + 2.5 + 3 of 9 pairs won (raw pooled scores would give 1.0)
    assert patch_auroc(preds) == pytest.approx(8.5 / 9)
    # with the normal bag (-> 0, 1): negatives {0, .5, 0, 0, 1}: 4.5 + 3.5 + 4.5 of 15
    assert patch_auroc(preds, positive_bags_only=False) == pytest.approx(12.5 / 15)


def test_patch_auroc_needs_a_tumour_bag():
    preds = hand_predictions()
    preds.y = np.array([0, 0, 0])
    with pytest.raises(ValueError, match="tumour"):
        patch_auroc(preds)


def test_binary_metrics_take_logits():
    logits = torch.tensor([0.3])  # probability 0.57: a positive prediction
    target = torch.tensor([1])
    metrics = binary_metrics("cpu")
    metrics["acc"].update(logits, target)
    assert metrics["acc"].compute() == 1.0
    # torchmetrics alone reads a batch of values inside [0, 1] as probabilities
    plain = torchmetrics.classification.BinaryAccuracy()
    plain.update(logits, target)
    assert plain.compute() == 0.0


def test_binary_metrics_auroc_and_column_targets():
    logits = torch.tensor([-2.0, 1.0, 0.5, -0.1])
    target = torch.tensor([[0], [1], [0], [1]])  # (batch_size, 1) is accepted
    metrics = binary_metrics("cpu")
    for m in metrics.values():
        m.update(logits, target)
    assert metrics["auroc"].compute().item() == pytest.approx(3 / 4)
    assert metrics["acc"].compute().item() == pytest.approx(2 / 4)
    assert metrics["f1"].compute().item() == pytest.approx(0.5)


# ----------------------------------------------------------------------------- training


class Recorder(nn.Module):
    """A MIL model with dropout that records the mode and grad state of every call."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(D, 1)
        self.dropout = nn.Dropout(0.5)
        self.calls: list[tuple[bool, bool]] = []

    def forward(self, X, mask=None):
        return self.linear(self.dropout(X)).mean(1).squeeze(-1)

    def compute_loss(self, Y, X, mask=None):
        self.calls.append((self.training, torch.is_grad_enabled()))
        logits = self.forward(X, mask)
        return logits, {"bce": nn.functional.binary_cross_entropy_with_logits(logits, Y.float())}


def synthetic_bags(n: int, seed: int) -> list[TensorDict]:
    g = torch.Generator().manual_seed(seed)
    return [
        TensorDict({"X": torch.randn(4 + i % 3, D, generator=g), "Y": torch.tensor([i % 2])})
        for i in range(n)
    ]


def test_train_model_validates_in_eval_mode_without_gradients():
    model = Recorder()
    train_loader = make_loader(synthetic_bags(4, 0), batch_size=2, shuffle=True)
    val_loader = make_loader(synthetic_bags(3, 1), batch_size=1)
    trained, history = train_model(model, train_loader, val_loader, epochs=2, device="cpu")
    # per epoch: 2 training batches, then 3 validation bags
    assert model.calls == 2 * ([(True, True)] * 2 + [(False, False)] * 3)
    assert not trained.training
    assert list(history["epoch"]) == [1, 2]
    for column in ["train/loss", "val/loss", "val/auroc", "val/acc", "val/f1", "seconds"]:
        assert column in history.columns
    assert np.isfinite(history["val/loss"]).all()


def test_train_model_keeps_the_best_validation_weights():
    torch.manual_seed(0)
    model = ABMIL(D, att_dim=4, hidden_dim=5)
    bags = synthetic_bags(8, 2)
    for bag in bags:  # a learnable signal: positive bags have a shifted instance
        bag["X"][0] += 3.0 * bag["Y"]
    flipped = [TensorDict({"X": b["X"], "Y": 1 - b["Y"]}) for b in bags[:4]]
    train_loader = make_loader(bags, batch_size=2, shuffle=True)
    val_loader = make_loader(flipped, batch_size=1)  # learning the signal hurts validation
    trained, history = train_model(model, train_loader, val_loader, epochs=6, lr=1e-2)
    best_epoch = int(history["val/loss"].idxmin())
    assert best_epoch < len(history) - 1, history  # the last epoch is not the best one
    with torch.no_grad():
        losses = [
            trained.compute_loss(b["Y"], b["X"], b["mask"])[1]["BCEWithLogitsLoss"].item()
            for b in val_loader
        ]
    # the returned weights are those of the best epoch, not the last
    assert np.mean(losses) == pytest.approx(history["val/loss"].iloc[best_epoch], rel=1e-4)


# ----------------------------------------------------------------------------- demo slides


@pytest.fixture(scope="module")
def small_splits(demo_settings):
    """Four test slides (two tumour, two normal) as 'train' and two more as 'val'."""
    table = read_split(demo_settings.test_csv)
    tumour = table[table.wsi_label == 1].wsi_name.tolist()
    normal = table[table.wsi_label == 0].wsi_name.tolist()
    train = load_dataset(demo_settings, demo_settings.test_csv, tumour[:2] + normal[:2])
    val = load_dataset(demo_settings, demo_settings.test_csv, [tumour[2], normal[2]])
    return train, val


def test_predict_shapes_and_values(small_splits, demo_settings):
    train, _ = small_splits
    in_dim = train[0]["X"].shape[1]
    torch.manual_seed(0)
    model = ABMIL(in_dim, att_dim=8, hidden_dim=5).train()
    preds = predict(model, train)
    assert not model.training  # predict switches to eval mode
    assert preds.names == list(train.get_bag_names())
    labels = read_split(demo_settings.test_csv).set_index("wsi_name").wsi_label
    assert preds.y.tolist() == [int(labels[n]) for n in preds.names]
    assert sorted(preds.y.tolist()) == [0, 0, 1, 1]
    assert preds.prob.shape == (4,)
    assert ((preds.prob > 0) & (preds.prob < 1)).all()
    for i in range(len(train)):
        bag = train[i]
        n = len(bag["X"])
        assert preds.inst_scores[i].shape == (n,)
        assert preds.attention[i].shape == (n,)
        assert preds.attention[i].sum() == pytest.approx(1.0, abs=1e-5)
        np.testing.assert_array_equal(preds.y_inst[i], bag["y_inst"].numpy().astype(int))
        np.testing.assert_array_equal(preds.grid_xy[i], bag["coords"].numpy())
        with torch.no_grad():
            logit, f = model.predict(bag["X"][None], torch.ones(1, n))
        assert preds.prob[i] == pytest.approx(torch.sigmoid(logit).item(), abs=1e-6)
        np.testing.assert_allclose(preds.inst_scores[i], f[0].numpy(), rtol=1e-5, atol=1e-6)
    table = preds.table()
    assert list(table.columns) == ["name", "y", "prob"] and len(table) == 4


def test_train_or_load_trains_once_then_loads(small_splits, demo_settings, monkeypatch, tmp_path):
    train, val = small_splits
    in_dim = train[0]["X"].shape[1]
    monkeypatch.setattr(training, "cache_dir", lambda cfg: tmp_path)

    def make():
        return ABMIL(in_dim, att_dim=8, hidden_dim=5)

    def loaders(batch_size=1, seed=0):
        return make_loader(train, batch_size, shuffle=True, seed=seed), make_loader(val)

    first, hist1 = train_or_load(demo_settings, "t", make, *loaders(), epochs=2, device="cpu")
    files = sorted(tmp_path.glob("t-*.pt"))
    assert len(files) == 1
    # nothing else in the folder: no temporary file of any name is left
    assert [p.name for p in tmp_path.iterdir()] == [files[0].name]

    def no_training(*args, **kwargs):
        raise AssertionError("train_or_load trained although the weights were cached")

    monkeypatch.setattr(training, "fit", no_training)
    second, hist2 = train_or_load(demo_settings, "t", make, *loaders(), epochs=2, device="cpu")
    assert not second.training
    for key, value in first.state_dict().items():
        torch.testing.assert_close(second.state_dict()[key], value.cpu())
    pd.testing.assert_frame_equal(hist1.reset_index(drop=True), hist2, check_dtype=False)

    # any change of setting, loader or model is a cache miss (and so would train)
    for kwargs, loader_args in [
        ({"epochs": 3}, {}),
        ({"epochs": 2, "lr": 1e-2}, {}),
        ({"epochs": 2}, {"batch_size": 2}),
        ({"epochs": 2}, {"seed": 1}),
    ]:
        with pytest.raises(AssertionError, match="trained although"):
            train_or_load(demo_settings, "t", make, *loaders(**loader_args), **kwargs)
    with pytest.raises(AssertionError, match="trained although"):
        train_or_load(
            demo_settings, "t", lambda: ABMIL(in_dim, 8, 6), *loaders(), epochs=2, device="cpu"
        )


def test_train_or_load_initial_weights_do_not_depend_on_the_global_seed(
    small_splits, demo_settings, monkeypatch, tmp_path
):
    train, val = small_splits
    in_dim = train[0]["X"].shape[1]
    monkeypatch.setattr(training, "cache_dir", lambda cfg: tmp_path)
    seen = []

    def capture(model, *args, **kwargs):
        seen.append({k: v.clone() for k, v in model.state_dict().items()})
        return model, pd.DataFrame({"epoch": [1]})

    monkeypatch.setattr(training, "fit", capture)
    for global_seed in (1, 2):
        torch.manual_seed(global_seed)
        train_or_load(
            demo_settings,
            f"init{global_seed}",
            lambda: ABMIL(in_dim, att_dim=8, hidden_dim=5),
            make_loader(train, shuffle=True),
            make_loader(val),
            retrain=True,
            seed=0,
        )
    for key in seen[0]:
        torch.testing.assert_close(seen[0][key], seen[1][key])


def test_trained_abmil_uses_the_shared_settings(small_splits, demo_settings, monkeypatch):
    train, val = small_splits
    calls = []

    def fake_train_or_load(cfg, name, make_model, train_loader, val_loader, **kwargs):
        calls.append((name, make_model(), train_loader, val_loader, kwargs))
        return "model", "history"

    monkeypatch.setattr(training, "train_or_load", fake_train_or_load)
    assert training.trained_abmil(demo_settings, (train, val, None), "cpu") == (
        "model",
        "history",
    )
    (name, model, train_loader, val_loader, kwargs) = calls[0]
    assert name == "abmil"
    assert isinstance(model, ABMIL)
    assert model.pool.fc1.out_features == training.ABMIL_SETTINGS["att_dim"]
    assert model.classifier.in_features == training.ABMIL_SETTINGS["hidden_dim"]
    assert train_loader.dataset is train and val_loader.dataset is val
    assert train_loader.batch_size == training.BATCH_SIZE
    assert kwargs == {"device": "cpu", **training.TRAIN_SETTINGS}
