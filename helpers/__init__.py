"""The companion package of the book: a map.

Each module holds one idea; each public name has one home, the module (or package) listed
here, and chapters, tests and benchmarks import it from there. Nothing is imported by this
file (``import helpers.settings`` stays fast). Higher roles import lower ones, never the
reverse: ``make lint`` checks that contract (pyproject.toml, ``[tool.importlinter]``), and
``tests/test_structure.py`` that no module is over 500 lines, no function over 60.

Running the book (top)
    settings      ``setup``, ``load_settings``, ``Settings`` (the data's paths), ``get_device``,
                  ``seed_everything``, ``check_optional_folders``
    runs          ``Run``, ``train_many``, ``cpu_workers``: many trainings side by side
    training      ``train_model``, ``train_or_load``, ``trained_abmil``, ``trained_meanpool``,
                  ``binary_metrics``, ``EvalTrainer``, ``ABMIL_SETTINGS``, ``TRAIN_SETTINGS``,
                  the weight cache (``cache_dir``, ``cache_path``, ``cache_problem``)
    loop          ``fit``, ``one_pass``, ``BatchCache``, ``PassRecord``: the training loop
    viewer        ``slide_viewer``, ``write_slide_viewer``, ``write_viewer``, ``Viewer``: the
                  deep-zoom slide viewer with the attention layer (OpenSeadragon, static/)
    evaluation    ``predict``, ``Predictions``, ``bag_metrics``, ``patch_auroc``,
                  ``slide_patch_auroc``, ``require_patch_labels``
    data          ``load_splits``, ``load_dataset``, ``make_loader``, ``collate``,
                  ``bag_table``, ``read_split``, ``patch_labels_hint``, ``labels_commands``,
                  ``patch_size_level0``, ``level0_mpp``, ``patch_um``, ...

The demo cohort
    demo/         ``make_cohort``, ``ensure_cohort``, ``ensure_slide``, ``plan_cohort``,
                  ``SlideSpec``, ``CohortPaths``, ``Manifest``, ``python -m helpers.demo``
                  (modules: plan, paint, process, manifest, safety, workers, fast_start,
                  tables, build, cli)
    synth         painting H&E-like tissue (``paint_section``, ``tissue_shape``, ...)
    encoder       ``StainStatsEncoder``, the weight-free patch encoder; ``calibrate``

Processing slides (TRIDENT's steps, labels, pictures)
    trident       ``segment_tissue``, ``patch_grid``, ``read_patches``, ``extract_features``,
                  ``coords_attributes``, ``grid_attributes``, ...
    labels/       ``label_slide``, ``label_folder``, ``labels_from_fractions``,
                  ``relaxed_threshold``, ``python -m helpers.labels`` (rules, folder, cli)
    coverage      ``tumor_fraction_from_mask``, ``tumor_fraction_from_xml``,
                  ``box_fractions``, ``mask_values``, ``check_mask_size``
    canvas        ``slide_canvas``, ``overlay_on_thumbnail``, ``canvas_rows_cols``
    reference     the slow per-patch references: ``slide_canvas_per_patch``,
                  ``tumor_fraction_per_patch``
    annotations   ASAP XML: ``read_polygons``, ``write_asap_xml``, ``asap_xml``,
                  ``rasterise``, ``fill_polygons``, ``outline``, ``TUMOR_GROUPS``
    deepzoom      Deep Zoom pyramids of tissue tiles only: ``write_slide_pyramid``,
                  ``write_value_pyramid``, ``tissue_rects_level0``, ``Pyramid``
    slide         reading a slide: ``open_slide``, ``read_thumbnail``, ``read_level``,
                  ``to_rgb``, ``choose_level``, ``best_level``, ``slide_mpp``,
                  ``level0_magnification``, ``TiffLevelReader``, ``LevelTiles``

Metrics and figures
    froc/         ``froc``, ``froc_from_predictions``, ``lesions``, ``lesion_table``,
                  ``grade_slide``, ``slide_detections``, ``plot_froc``, ... (rules, scoring)
    bootstrap     ``bootstrap_differences``, ``resample_slides``
    scores        ``minmax``: scores scaled to [0, 1]
    models        ``ABMIL``, ``MeanPoolMIL``, ``masked_softmax``, ``torchmil_abmil``, ...
    plots         ``strip_ticks``, ``abmil_diagram``
    glue          ``glue``, ``listed``: numbers shown in the prose

Files and frames (bottom)
    formats/      every TRIDENT file: ``read_coords``, ``save_coords``, ``read_features``,
                  ``save_features``, ``read_patch_labels``, ``write_patch_labels``,
                  ``read_labels_csv``, ``save_thumbnail``, ``LabelInputError``, ...
                  (one module per format)
    layout        the folder layout: ``TridentLayout``, ``CohortLayout``, ``demo_dir``,
                  ``WSI_EXTENSIONS``, ``DEMO_ENCODER``, ``mask_file``, ...
    grid          coordinate frames: ``grid_xy``, ``check_coords_level0``,
                  ``check_grid_xy``, ``values_on_grid``
    fileio        ``atomic_path``, ``file_lock``, ``write_bytes``, ``require_free_space``
    progress      ``progress_bar``, ``in_notebook``
    stains        the H&E stain vectors
"""
