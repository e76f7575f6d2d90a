"""``python -m helpers.labels``: the labelling command line (the earlier tutorial's arguments)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import pandas as pd

from helpers.formats import (
    LabelInputError,
)
from helpers.labels.folder import label_folder
from helpers.labels.rules import DEFAULT_THRESHOLD


def summary_line(table: pd.DataFrame, threshold: float = DEFAULT_THRESHOLD) -> str:
    """One line describing a :func:`label_folder` result, naming tumor slides left empty."""
    counts = table["source"].value_counts()
    parts = [
        f"{len(table)} slides labelled ({counts.get('mask', 0)} from masks, "
        f"{counts.get('xml', 0)} from XML, {counts.get('none', 0)} normal), "
        f"{int(table['n_positive'].sum())} positive patches of {int(table['n_patches'].sum())}"
    ]
    tumor = table[table["wsi_label"] == 1]
    relaxed = tumor[tumor["relaxed"]]
    empty = tumor[tumor["n_positive"] == 0]
    if len(relaxed):
        parts.append(
            "threshold relaxed for "
            + ", ".join(
                f"{n} ({t:g})" for n, t in zip(relaxed["name"], relaxed["threshold"], strict=True)
            )
        )
    if len(empty):
        parts.append(f"tumor slides with no patch above {threshold:g}: " + ", ".join(empty["name"]))
    return "; ".join(parts)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m helpers.labels",
        description="Write <save_dir>/<name>.h5 (key patch_labels) for every slide of a CSV, "
        "from tumor masks or ASAP XML annotations, reading each mask once at low resolution.",
    )
    p.add_argument("--csv_path", required=True, help="CSV with columns wsi_name,wsi_label")
    p.add_argument("--masks_dir", default=None, help="folder of <name>_mask.tif")
    p.add_argument("--coords_dir", required=True, help="TRIDENT patches/ folder")
    p.add_argument("--save_dir", required=True, help="output folder (patch_labels/)")
    p.add_argument(
        "--patch_size",
        type=int,
        default=None,
        help="patch side at --patch_level, the same for every slide (default: each coords "
        "file's patch_size_level0)",
    )
    p.add_argument(
        "--patch_level",
        type=int,
        default=0,
        help="level of --patch_size; the level-0 side is patch_size * 2**patch_level",
    )
    p.add_argument("--annotations_dir", default=None, help="folder of <name>.xml (ASAP)")
    p.add_argument(
        "--threshold",
        type=float,
        default=DEFAULT_THRESHOLD,
        help="a patch is tumor when its tumor fraction is > threshold",
    )
    p.add_argument(
        "--relax_threshold",
        action="store_true",
        help="halve the threshold for tumor slides with no positive patch",
    )
    p.add_argument("--tumor_value", type=int, default=2, help="mask value of tumor pixels")
    p.add_argument(
        "--wsi_dir",
        default=None,
        help="folder of the slides: checks each mask's size against its slide when the coords "
        "files lack level0_width/height",
    )
    p.add_argument("--no_progress", action="store_true", help="no progress bar")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.masks_dir is None and args.annotations_dir is None:
        print(
            "warning: neither --masks_dir nor --annotations_dir given: only normal slides "
            "can be labelled.",
            file=sys.stderr,
        )
    try:
        table = label_folder(
            args.csv_path,
            args.coords_dir,
            args.save_dir,
            masks_dir=args.masks_dir,
            annotations_dir=args.annotations_dir,
            patch_size=args.patch_size,
            patch_level=args.patch_level,
            threshold=args.threshold,
            relax_threshold=args.relax_threshold,
            progress=not args.no_progress,
            tumor_value=args.tumor_value,
            wsi_dir=args.wsi_dir,
        )
    except (LabelInputError, FileNotFoundError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(summary_line(table, args.threshold))
    return 0
