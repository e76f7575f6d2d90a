"""The slide-labels CSV: ``wsi_name,wsi_label`` (0 normal, 1 tumour), checked row by row."""

from __future__ import annotations

from pathlib import Path
from typing import cast

import pandas as pd

from helpers.formats.h5 import MAX_SHOWN, LabelInputError
from helpers.layout import WSI_EXTENSIONS


def _read_csv_text(csv_path: Path) -> pd.DataFrame:
    """The CSV as stripped text, with columns ``wsi_name`` and ``wsi_label`` checked present."""
    if not csv_path.is_file():
        raise FileNotFoundError(f"labels CSV not found: {csv_path}")
    try:
        df = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError:
        raise LabelInputError(
            f"labels CSV {csv_path} is empty: it needs a header wsi_name,wsi_label and one row "
            "per slide."
        ) from None
    except (OSError, ValueError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise LabelInputError(f"cannot read labels CSV {csv_path}: {exc}") from exc
    df.columns = [str(c).strip() for c in df.columns]
    missing = {"wsi_name", "wsi_label"} - set(df.columns)
    if missing:
        raise LabelInputError(
            f"{csv_path} needs columns wsi_name,wsi_label; missing {sorted(missing)} "
            f"(has {list(df.columns)})."
        )
    if df.empty:
        raise LabelInputError(f"labels CSV {csv_path} has a header but no rows (no slide).")
    return df


def _without_slide_extension(name: str) -> str:
    """``normal_001.tif`` -> ``normal_001`` (TRIDENT names its files by the slide's stem);
    only a slide extension (:data:`helpers.layout.WSI_EXTENSIONS`) goes, so a name with other
    dots (``TCGA-...-DX1.2C0E04A1``) stays whole."""
    for ext in WSI_EXTENSIONS:
        if name.lower().endswith(ext) and len(name) > len(ext):
            return name[: -len(ext)]
    return name


def read_labels_csv(csv_path) -> pd.DataFrame:
    """A slide-labels CSV (``wsi_name,wsi_label``), checked row by row.

    Names are stripped of surrounding spaces and of a slide extension (``normal_001.tif``
    names the slide ``normal_001``, as TRIDENT names its files); names of digits only stay
    text (``"00123"``).

    Raises :class:`LabelInputError` (naming the file, and the lines at fault) for an empty
    file, a file with a header but no rows, missing columns, blank names, names listed
    twice, and labels that are blank or not 0/1; ``FileNotFoundError`` when it is missing.

    Returns:
        The table with ``wsi_name`` as ``str`` and ``wsi_label`` as ``int`` (0 or 1).
    """
    csv_path = Path(csv_path)
    df = _read_csv_text(csv_path)
    names = df["wsi_name"].str.strip().map(_without_slide_extension)
    text = df["wsi_label"].str.strip()
    # a Series in, a Series out (pandas types the result as any of its scalars too)
    value = cast(pd.Series, pd.to_numeric(text, errors="coerce"))
    line = df.index + 2  # 1-based, after the header

    def rows(mask) -> str:
        shown = [
            f"line {n}: {nm or '(blank name)'},{lb or '(blank label)'}"
            for n, nm, lb in zip(line[mask][:MAX_SHOWN], names[mask], text[mask], strict=False)
        ]
        more = int(mask.sum()) - len(shown)
        return "; ".join(shown) + (f"; ... and {more} more" if more > 0 else "")

    blank = names == ""
    if blank.any():
        raise LabelInputError(f"{csv_path}: wsi_name is blank on {rows(blank)}.")
    bad = ~value.isin([0, 1])
    if bad.any():
        raise LabelInputError(
            f"{csv_path}: wsi_label must be 0 (normal) or 1 (tumor); bad {rows(bad)}."
        )
    dup = names.duplicated(keep=False)
    if dup.any():
        raise LabelInputError(f"{csv_path}: names listed more than once: {rows(dup)}.")
    return pd.DataFrame({"wsi_name": names.astype(str), "wsi_label": value.astype(int)})
