"""One switch between the embedded demo cohort and a reader's own CAMELYON16 + TRIDENT folders.

Every chapter starts with ``cfg = setup()``. By default it points at the synthetic demo
cohort (and generates it when missing). To run the book on real data, set environment
variables before starting Jupyter (or before the first cell runs)::

    MIL_BOOK_DATA=camelyon16
    MIL_BOOK_WSI_DIR=/path/to/CAMELYON16/images          # <name>.tif
    MIL_BOOK_MASK_DIR=/path/to/CAMELYON16/masks          # <name>_mask.tif   (optional)
    MIL_BOOK_ANNOTATIONS_DIR=/path/to/annotations        # <name>.xml        (optional)
    MIL_BOOK_JOB_DIR=/path/to/trident_processed          # TRIDENT --job_dir
    MIL_BOOK_ENCODER=conch_v15                           # features_<encoder>/
    MIL_BOOK_TRAIN_CSV=/path/to/train.csv                # wsi_name,wsi_label
    MIL_BOOK_TEST_CSV=/path/to/test.csv

Optional for both: ``MIL_BOOK_PATCH_DIR`` (default ``20x_512px_0px_overlap``),
``MIL_BOOK_DEMO_DIR`` (where the demo cohort lives, default ``<repo>/data/demo``) and
``MIL_BOOK_MODELS_DIR`` (where trained weights are cached; default: beside the data, or
``~/.cache/mil-book/models`` when that folder is read-only).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported when first needed: `python -m helpers.demo` starts fast
    import torch

from helpers.layout import (
    ANNOTATIONS_DIR,
    DEFAULT_PATCH_DIR,
    DEMO_ENCODER,
    JOB_DIR,
    MASKS_DIR,
    WSI_EXTENSIONS,
    WSIS_DIR,
    TridentLayout,
    annotation_file,
    demo_dir,
    mask_file,
)


@dataclass(frozen=True)
class Settings(TridentLayout):
    """Where the book reads its slides, masks, annotations and TRIDENT outputs (the TRIDENT
    paths, ``coords_path(name)`` and the like, come from :class:`helpers.layout.TridentLayout`)."""

    source: str
    wsi_dir: Path
    mask_dir: Path | None
    annotations_dir: Path | None
    job_dir: Path
    encoder: str
    train_csv: Path
    test_csv: Path
    patch_dir: str = DEFAULT_PATCH_DIR

    @property
    def is_demo(self) -> bool:
        return self.source == "demo"

    @property
    def base_path(self) -> str:
        """``trident_dir`` as ``TridentWSIDataset(base_path=...)`` wants it (trailing slash)."""
        return str(self.trident_dir) + os.sep

    def ensure_slides(self, *names: str) -> None:
        """Make sure the slide files of ``names`` are there before a cell opens them.

        On the demo's fast start (``setup()`` writes the features first) a slide's pixels,
        its TIFF pyramid, mask, XML and thumbnail, are painted by the first call that names
        it: a few seconds a slide, the same bytes as a full build. On your own data, and on a
        demo slide already made, it only checks that each slide file exists.

        Arguments:
            names: slide names (``wsi_name`` in the CSVs).

        Raises:
            FileNotFoundError: a slide file is missing (its message names the folder).
        """
        if self.is_demo:
            from helpers.demo import ensure_slide

            for name in names:
                ensure_slide(self.job_dir.parent, name)
        for name in names:
            self.wsi_path(name)

    def wsi_path(self, name: str) -> Path:
        """The slide file of ``name`` (any common WSI extension)."""
        for ext in WSI_EXTENSIONS:
            path = self.wsi_dir / f"{name}{ext}"
            if path.exists():
                return path
        hint = f" (on the demo, call cfg.ensure_slides({name!r}) first)" if self.is_demo else ""
        raise FileNotFoundError(
            f"No slide named {name!r} in {self.wsi_dir} "
            f"(looked for {', '.join(WSI_EXTENSIONS)}){hint}."
        )

    def mask_path(self, name: str) -> Path | None:
        """``<mask_dir>/<name>_mask.tif`` when it exists, else ``None``."""
        if self.mask_dir is None:
            return None
        path = self.mask_dir / mask_file(name)
        return path if path.exists() else None

    def annotation_path(self, name: str) -> Path | None:
        """``<annotations_dir>/<name>.xml`` when it exists, else ``None``."""
        if self.annotations_dir is None:
            return None
        path = self.annotations_dir / annotation_file(name)
        return path if path.exists() else None


def _env_path(var: str) -> Path | None:
    """The path in environment variable ``var``; ``None`` when it is unset or empty."""
    value = os.environ.get(var)
    return Path(value).expanduser() if value else None


def _required_path(var: str) -> Path:
    """The path in environment variable ``var``; ``OSError`` when it is unset or empty."""
    path = _env_path(var)
    if path is None:
        raise OSError(f"MIL_BOOK_DATA=camelyon16 needs {var} to be set (see helpers/settings.py).")
    return path


def load_settings() -> Settings:
    """Read the data source from the environment (see the module docstring)."""
    source = os.environ.get("MIL_BOOK_DATA", "demo").strip().lower()
    patch_dir = os.environ.get("MIL_BOOK_PATCH_DIR", DEFAULT_PATCH_DIR)
    if source == "demo":
        root = demo_dir()
        return Settings(
            source="demo",
            wsi_dir=root / WSIS_DIR,
            mask_dir=root / MASKS_DIR,
            annotations_dir=root / ANNOTATIONS_DIR,
            job_dir=root / JOB_DIR,
            encoder=os.environ.get("MIL_BOOK_ENCODER", DEMO_ENCODER),
            train_csv=root / "train.csv",
            test_csv=root / "test.csv",
            patch_dir=patch_dir,
        )
    if source == "camelyon16":
        return Settings(
            source="camelyon16",
            wsi_dir=_required_path("MIL_BOOK_WSI_DIR"),
            mask_dir=_env_path("MIL_BOOK_MASK_DIR"),
            annotations_dir=_env_path("MIL_BOOK_ANNOTATIONS_DIR"),
            job_dir=_required_path("MIL_BOOK_JOB_DIR"),
            encoder=os.environ.get("MIL_BOOK_ENCODER", "conch_v15"),
            train_csv=_required_path("MIL_BOOK_TRAIN_CSV"),
            test_csv=_required_path("MIL_BOOK_TEST_CSV"),
            patch_dir=patch_dir,
        )
    raise ValueError(f"MIL_BOOK_DATA must be 'demo' or 'camelyon16', not {source!r}.")


#: The optional folders of a reader's data: variable, attribute, what the folder holds.
OPTIONAL_FOLDERS = (
    ("MIL_BOOK_MASK_DIR", "mask_dir", "<name>_mask.tif tumour masks"),
    ("MIL_BOOK_ANNOTATIONS_DIR", "annotations_dir", "<name>.xml annotations"),
)


def check_optional_folders(cfg: Settings) -> None:
    """``MIL_BOOK_MASK_DIR`` and ``MIL_BOOK_ANNOTATIONS_DIR`` are optional, but when set they
    must name a folder: a ``FileNotFoundError`` says which variable points nowhere."""
    for variable, attribute, holds in OPTIONAL_FOLDERS:
        folder = getattr(cfg, attribute)
        if folder is not None and not folder.is_dir():
            what = "is a file, not a folder" if folder.exists() else "does not exist"
            raise FileNotFoundError(
                f"{variable}={folder} {what}: point it at the folder of the {holds}, or unset "
                "it to run without them."
            )


def get_device() -> torch.device:
    """The GPU when there is one (CUDA, then Apple MPS), else the CPU."""
    import torch

    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def seed_everything(seed: int = 0) -> None:
    """Seed Python, NumPy and torch (CPU and GPU) for repeatable runs."""
    import random

    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def setup(seed: int = 0, verbose: bool = True) -> Settings:
    """First call of every chapter: pick the data, make the demo cohort if missing, seed.

    Returns the :class:`Settings`; the device is ``get_device()``.
    """
    import torch

    cfg = load_settings()
    if cfg.is_demo:
        from helpers.demo import ensure_cohort

        # the h5 files at once, each slide's pixels when a chapter first opens it
        ensure_cohort(cfg.job_dir.parent, quiet=not verbose, lazy=True)
    else:
        for path in (cfg.wsi_dir, cfg.trident_dir, cfg.train_csv, cfg.test_csv):
            if not path.exists():
                raise FileNotFoundError(f"{path} does not exist; check the MIL_BOOK_* variables.")
        check_optional_folders(cfg)
    seed_everything(seed)
    if get_device().type == "cpu":
        # MIL models are small: on a CPU one thread beats several (no thread hand-offs)
        torch.set_num_threads(1)
    if verbose:
        print(
            f"data: {cfg.source} ({cfg.trident_dir}), encoder: {cfg.encoder}, "
            f"device: {get_device()}"
        )
    return cfg
