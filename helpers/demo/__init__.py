"""The demo cohort: CAMELYON16 in miniature, made locally and deterministically.

``python -m helpers.demo [--out DIR] [--seed N] [--force]`` writes (default ``DIR = data/demo``)::

    DIR/wsis/<name>.tif                 pyramidal tiled-JPEG TIFF, Aperio-style (20x, 0.5 mpp)
    DIR/annotations/<name>.xml          ASAP XML tumour polygons (tumour slides), level-0 px
    DIR/masks/<name>_mask.tif           pyramidal mask: 0 background / 1 tissue / 2 tumour
    DIR/wsi_labels.csv, train.csv, test.csv          columns wsi_name,wsi_label
    DIR/trident_processed/thumbnails/<name>.jpg
    DIR/trident_processed/20x_512px_0px_overlap/patches/<name>_patches.h5
    DIR/trident_processed/20x_512px_0px_overlap/features_demo_stats/<name>.h5
    DIR/trident_processed/20x_512px_0px_overlap/patch_labels/<name>.h5

70 slides (train: 24 ``normal_NNN`` + 16 ``tumor_NNN``; test: 30 ``test_NNN``, 8 of them
tumour), from two centres (``SlideSpec.centre``: stain, scanner blur and background differ).
Tumour slides hold macro-metastases (about 30-55% of the patches; where the section has room,
up to five small satellite foci beside the main lesion, some of them scattered tumour cells
among lymphocytes), micro-metastases (1-4 tumour patches, at most 1% of a bag of
400-1,300) or, one per split, isolated tumour cells only (clusters smaller than half a
patch: a positive slide without a positive patch). Bags hold about 260 patches on average;
three sections are larger than 1,000 patches. Normal nodes
carry benign look-alikes (germinal centres, sinus-histiocyte clusters). The slides are
painted by :mod:`helpers.synth`; the h5 files are computed from their pixels by
:mod:`helpers.trident` and :mod:`helpers.encoder`, and the patch labels from the masks by
:mod:`helpers.labels`, exactly as for real slides.

Safety: the demo writes only into a new or empty folder, or one that carries its marker
``.mil-book-demo.json`` (written before anything else); any other non-empty folder is refused
with a list of what is in it. ``cohort.json`` lists every file written, with its size and
SHA-256; ``--force`` deletes exactly those files (and the weights ``helpers.training`` cached
in ``models/``) and nothing else: an entry that is not a file the build writes inside the
cohort's folder (``../x``, an absolute path, a reader's file) is never deleted. A folder
without the marker is never taken over (cohorts made before helpers.demo 3, which wrote
none, are refused like any other folder: delete them and build again).

Every file is written atomically; an interrupted run (Ctrl-C stops it in about a second, the
worker processes exit when their parent dies) is finished by the next one. Every start
checks each file's size and time against the manifest (a few milliseconds; a file whose
time changed is hashed), and rebuilds what is damaged, or names it on read-only storage.

Fast start: ``helpers.settings.setup()`` asks for ``lazy=True``: the h5 files are written
from arrays shipped with the package (``demo_h5.npz``), byte-identical to a full build, and
a slide's TIFF, mask, XML and thumbnail are painted by :func:`ensure_slide`, which a
chapter calls, through :meth:`helpers.settings.Settings.ensure_slides`, before it opens a
slide. The path getters only look; they never paint.

Modules, one idea each:

- :mod:`~helpers.demo.plan`: the slides (:class:`SlideSpec`, :func:`plan_cohort`), the
  constants, and their files (:class:`CohortPaths`)
- :mod:`~helpers.demo.paint`: one slide painted and written (:func:`make_slide`)
- :mod:`~helpers.demo.process`: TRIDENT's steps on it (:func:`process_slide`)
- :mod:`~helpers.demo.manifest`: ``cohort.json`` (:class:`Manifest`), file records, checks
- :mod:`~helpers.demo.safety`: the marker, what ``--out`` holds, what may be deleted
- :mod:`~helpers.demo.workers`: the worker processes
- :mod:`~helpers.demo.fast_start`: the packed arrays and painting on demand
- :mod:`~helpers.demo.tables`: the label CSVs and the cohort's summary
- :mod:`~helpers.demo.build`: the whole cohort (:func:`make_cohort`)
- :mod:`~helpers.demo.cli`: ``python -m helpers.demo``
"""

from helpers.demo.build import default_out, ensure_cohort, make_cohort
from helpers.demo.cli import main
from helpers.demo.fast_start import PACKED, ensure_slide, pack_arrays
from helpers.demo.manifest import FORMAT, MANIFEST, Manifest, check_file, file_record, verify_files
from helpers.demo.paint import (
    SATELLITE_CELLULARITY,
    aperio_description,
    make_slide,
    pyramid_levels,
    write_pyramid,
)
from helpers.demo.plan import (
    COHORT_VERSION,
    DEFAULT_SIZES,
    PATCH_SIZE,
    PATCH_SIZE_LEVEL0,
    TARGET_MAG,
    CohortError,
    CohortPaths,
    SlideSpec,
    plan_cohort,
)
from helpers.demo.process import process_slide
from helpers.demo.safety import MARKER
from helpers.demo.tables import cohort_summary

__all__ = [
    "COHORT_VERSION",
    "DEFAULT_SIZES",
    "FORMAT",
    "MANIFEST",
    "MARKER",
    "PACKED",
    "PATCH_SIZE",
    "PATCH_SIZE_LEVEL0",
    "SATELLITE_CELLULARITY",
    "TARGET_MAG",
    "CohortError",
    "CohortPaths",
    "Manifest",
    "SlideSpec",
    "aperio_description",
    "check_file",
    "cohort_summary",
    "default_out",
    "ensure_cohort",
    "ensure_slide",
    "file_record",
    "main",
    "make_cohort",
    "make_slide",
    "pack_arrays",
    "plan_cohort",
    "process_slide",
    "pyramid_levels",
    "verify_files",
    "write_pyramid",
]
