"""Setting up a site without the GUI: GCPs, calibration, surveys -> a scaffold.

``gcp`` (GCP tables), ``calibrate`` (scale | homography | DLT + LM | PnP, with residuals),
``survey`` (cross-section surveys: AC3 ``.mat``, CSVs, GeoJSON with a CRS), ``builder``
(:func:`build_site`: GCPs + a frame + a survey -> a scaffold with its plan view, section line
and STIV defaults), ``pyorc`` (pyOpenRiverCam camera configurations) and ``figure`` (the
``site show`` figure). The ``ivy-gpu site`` commands are this part's front end.

May import: core, kernels, hydraulics, scaffold, engines, stiv, frames, report (it reads a
frame of a video and draws with the report's canvas); nothing imports it but the CLI, the
benchmarks and the package's lazy names.
"""
