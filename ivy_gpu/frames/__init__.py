"""From a video file to the rectified image stack that STIV reads.

``video`` (PyAV streaming reader: worker thread, exact timestamps, 8-bit luma), ``stabilize``
(camera motion on stable ground, composed into the remap) and ``stack`` (decode -> the
scaffold's rectifier at the video's WSE -> ``engine.remap`` -> the stack in the engine's
memory, only the band the search lines read).

May import: every part listed before it (core, kernels, hydraulics, scaffold, engines, stiv).
"""
