"""The site as a scaffold describes it: the ``.ivy`` file and the camera-to-water geometry.

``ivyfile`` (read and write ``.ivy`` scaffolds: :class:`ScaffoldConfig`, SI inside),
``camera`` (DLT camera matrix, projection, back-projection), ``lens`` (OpenCV intrinsics and
distortion), ``prefilter`` (the GUI's FFmpeg rotate / flip / lens-correction filters as maps)
and ``rectify`` (:class:`Rectifier`: the remap tables of one scaffold at one water level,
pixel <-> world). Everything that reads a site reads it through this part.

May import: the core modules, :mod:`ivy_gpu.kernels` and :mod:`ivy_gpu.hydraulics`.
"""
