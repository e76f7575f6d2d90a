"""The demo cohort's plan: which slides it holds (:class:`SlideSpec`), their constants, and
where their files go (:class:`CohortPaths`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from helpers.layout import ANNOTATIONS_DIR, JOB_DIR, MASKS_DIR, WSIS_DIR, CohortLayout

# the content: bump it when the files for a seed change (5: satellite foci; 6: features
# computed in float64; 7: painting in float64 with an exact distance transform)
COHORT_VERSION = 7
PATCH_SIZE, TARGET_MAG, LEVEL0_MAG, MPP = 512, 20.0, 20, 0.5
PATCH_SIZE_LEVEL0 = int(PATCH_SIZE * LEVEL0_MAG // TARGET_MAG)  # 512
N_LEVELS = 7  # downsamples 1 .. 64
MANAGED = (WSIS_DIR, MASKS_DIR, ANNOTATIONS_DIR, JOB_DIR)
CSV_FILES = ("wsi_labels.csv", "train.csv", "test.csv")


class CohortError(RuntimeError):
    """Bad ``--out`` folder or a cohort that cannot be resumed."""


@dataclass(frozen=True)
class SlideSpec:
    """What one demo slide is: its name, split, label, kind of metastasis, centre and size."""

    index: int
    name: str
    split: str  # "train" or "test"
    label: int  # 0 normal, 1 tumour
    kind: str  # "normal", "macro", "micro" or "itc" (isolated tumour cells only)
    centre: str = "A"  # the hospital whose lab stained and scanned it (synth.CENTRES)
    large: bool = False  # a large section (1,000 patches or more)


DEFAULT_SIZES = ((24, 16), (22, 8))  # (normal, tumour) slides in train and in test
#: (split, kind) whose first slide is a large section (1,000 patches or more)
LARGE_SECTIONS = (("train", "normal"), ("train", "micro"), ("test", "micro"))


def _tumour_kinds(n: int, micro_every: int) -> list[str]:
    """Kinds of the ``n`` tumour slides of a split, in order: every ``micro_every``-th a
    micro-metastasis (from the second), the others macro, and the last one isolated tumour
    cells only when the split holds at least four tumour slides."""
    kinds = ["micro" if i % micro_every == 1 else "macro" for i in range(n)]
    if n >= 4:
        kinds[-1] = "itc"
    return kinds


def plan_cohort(seed: int, sizes: tuple = DEFAULT_SIZES) -> list[SlideSpec]:
    """The slides, deterministic for ``seed``; ``sizes``: ((normal, tumour) train, test).

    Each slide comes from centre A or B (about 60/40, in both splits). The large sections
    are the first micro-metastasis slide of each split and the first normal training slide.
    """
    n_train, n_test = sizes
    rng = np.random.default_rng([seed, 0])
    train = ["normal"] * n_train[0] + _tumour_kinds(n_train[1], micro_every=3)
    test_labels = rng.permutation([0] * n_test[0] + [1] * n_test[1])
    test_kinds = iter(_tumour_kinds(n_test[1], micro_every=3))
    test = [next(test_kinds) if label else "normal" for label in test_labels]
    centres = rng.random(len(train) + len(test)) < 0.6
    specs: list[SlideSpec] = []
    counters = {"normal": 0, "tumor": 0, "test": 0}
    large_left = set(LARGE_SECTIONS)  # the first slide of each of these is large
    for split, kinds in (("train", train), ("test", test)):
        for kind in kinds:
            prefix = "test" if split == "test" else ("normal" if kind == "normal" else "tumor")
            counters[prefix] += 1
            large = (split, kind) in large_left
            large_left.discard((split, kind))
            specs.append(
                SlideSpec(
                    len(specs),
                    f"{prefix}_{counters[prefix]:03d}",
                    split,
                    int(kind != "normal"),
                    kind,
                    "A" if centres[len(specs)] else "B",
                    large,
                )
            )
    return specs


@dataclass(frozen=True)
class CohortPaths(CohortLayout):
    """The demo cohort's files under ``root`` (:class:`helpers.layout.CohortLayout`), by slide."""

    def slide_files(self, spec: SlideSpec) -> list[Path]:
        """The painted files of ``spec``: TIFF, mask and (tumour slides) XML."""
        files = [self.wsi(spec.name), self.mask(spec.name)]
        return files + ([self.xml(spec.name)] if spec.label else [])

    def processed_files(self, spec: SlideSpec) -> list[Path]:
        """TRIDENT's files of ``spec``: thumbnail, coords and features."""
        return [
            self.thumbnail_path(spec.name),
            self.coords_path(spec.name),
            self.features_path(spec.name),
        ]

    def expected_files(self, specs: list[SlideSpec]) -> list[str]:
        """Every file a full build of ``specs`` writes, relative to ``root`` (POSIX)."""
        files = [self.root / n for n in CSV_FILES]
        for s in specs:
            files += self.slide_files(s) + self.processed_files(s)
            files.append(self.patch_labels_path(s.name))
        return [p.relative_to(self.root).as_posix() for p in files]
