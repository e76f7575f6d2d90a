"""``helpers.loop.fit`` against ``torchmil.utils.Trainer`` (``helpers.training.train_model``).

    PYTHONPATH=. python benchmarks/bench_loop.py [--epochs 20] [--demo_dir DIR]

Trains chapter 4's ABMIL on the demo cohort both ways, side by side in one process, with the
same settings, and prints the speed-up of ``fit`` (the Trainer's time over fit's) against
:data:`budgets.LOOP_SPEEDUP`, and whether the two gave the same weights (they must: a
difference fails the run). On a GPU both run there (the gain is larger: ``fit`` keeps the
bags on the device and never waits for it inside an epoch); ``CUDA_VISIBLE_DEVICES=``
times the CPU.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from budgets import LOOP_SPEEDUP, failed, verdict  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--demo_dir", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.demo_dir:
        os.environ["MIL_BOOK_DEMO_DIR"] = str(args.demo_dir)
    from helpers.data import load_splits, make_loader
    from helpers.loop import fit
    from helpers.models import ABMIL
    from helpers.settings import get_device, setup
    from helpers.training import ABMIL_SETTINGS, binary_metrics, train_model

    cfg, device = setup(verbose=False), get_device()
    if device.type == "cpu":
        torch.set_num_threads(1)  # as the chapters' small models run best
    train, val, _ = load_splits(cfg)
    in_dim = int(train[0]["X"].shape[-1])
    settings = {"epochs": args.epochs, "lr": 1e-3, "weight_decay": 1e-4, "seed": 0}
    seconds, weights = {}, {}
    for name in ("Trainer", "fit"):
        extra = {"metrics_dict": binary_metrics(device)} if name == "fit" else {}
        trainer = fit if name == "fit" else train_model
        model = ABMIL(in_dim, **ABMIL_SETTINGS)
        start = time.perf_counter()
        model, _ = trainer(
            model, make_loader(train, 1, shuffle=True, seed=0), make_loader(val, 1),
            device=device, **settings, **extra,
        )  # fmt: skip
        seconds[name], weights[name] = time.perf_counter() - start, model.state_dict()
    same = all(torch.equal(v, weights["fit"][k]) for k, v in weights["Trainer"].items())
    speedup = seconds["Trainer"] / seconds["fit"]
    verdicts = [verdict(speedup, LOOP_SPEEDUP), "PASS" if same else "FAIL"]
    print(f"ABMIL, {args.epochs} epochs on {device}: Trainer {seconds['Trainer']:.2f} s, "
          f"fit {seconds['fit']:.2f} s: {speedup:.2f}x (goal {LOOP_SPEEDUP:g}x): {verdicts[0]}; "
          f"the same weights: {same}: {verdicts[1]}")  # fmt: skip
    return 1 if failed(verdicts) else 0


if __name__ == "__main__":
    sys.exit(main())
