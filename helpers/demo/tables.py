"""The demo cohort's label tables (``wsi_labels.csv``, ``train.csv``, ``test.csv``) and its
summary, one row per slide."""

from __future__ import annotations

import os
from dataclasses import asdict
from pathlib import Path

import pandas as pd

from helpers.demo.manifest import FileRecord, Manifest, file_record
from helpers.demo.plan import DEFAULT_SIZES, MANAGED, CohortPaths, SlideSpec, plan_cohort
from helpers.fileio import atomic_path


def _csv_tables(specs: list[SlideSpec]) -> list[tuple[str, list[SlideSpec]]]:
    return [
        ("wsi_labels.csv", specs),
        ("train.csv", [s for s in specs if s.split == "train"]),
        ("test.csv", [s for s in specs if s.split == "test"]),
    ]


def write_tables(root: Path, specs: list[SlideSpec], records: dict[str, FileRecord]) -> None:
    """Write the three label CSVs of ``specs`` (columns ``wsi_name,wsi_label``) into
    ``root`` and their records into ``records``."""
    for name, subset in _csv_tables(specs):
        table = pd.DataFrame(
            {"wsi_name": [s.name for s in subset], "wsi_label": [s.label for s in subset]}
        )
        with atomic_path(root / name) as tmp:
            table.to_csv(tmp, index=False)
        records[name] = file_record(root / name)


def cohort_summary(root: str | os.PathLike) -> pd.DataFrame:
    """One row per slide: split, label, kind, bag size and tumour patches."""
    import h5py

    from helpers.formats.h5 import h5_array

    root = Path(root)
    paths = CohortPaths(root)
    m = Manifest.read(root)
    specs = m.specs() if m is not None else plan_cohort(0, DEFAULT_SIZES)
    rows = []
    for s in specs:
        with h5py.File(paths.patch_labels_path(s.name), "r") as f:
            labels = h5_array(f, "patch_labels")
        rows.append({**asdict(s), "n_patches": len(labels), "n_tumor_patches": int(labels.sum())})
    table = pd.DataFrame(rows).drop(columns="index")
    table["tumor_fraction"] = table["n_tumor_patches"] / table["n_patches"]
    return table


def print_summary(root: Path, table: pd.DataFrame, seconds: float) -> None:
    """What a finished build made: folders, slides by kind, bag sizes, tumour fractions."""
    size = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
    print(f"\nDemo cohort ready in {root} ({seconds:.0f} s, {size / 1e6:.0f} MB):")
    for sub in MANAGED:
        print(f"  {root / sub}")
    print(
        f"{len(table)} slides ({(table.label == 1).sum()} tumour: "
        f"{(table.kind == 'macro').sum()} macro, {(table.kind == 'micro').sum()} micro, "
        f"{(table.kind == 'itc').sum()} with isolated tumour cells only); "
        f"bag size mean {table.n_patches.mean():.0f} (min {table.n_patches.min()}, "
        f"max {table.n_patches.max()})"
    )
    by_kind = table.groupby("kind")["tumor_fraction"].agg(["mean", "min", "max"])
    print("tumour-patch fraction by kind:\n" + by_kind.round(3).to_string())
