"""Pinned, double-buffered frame uploads on a non-blocking stream (issue 25 item 5).

CuPy's streams, events and pinned memory are replaced by a stand-in that records every
operation in order; the GPU engine's rectification runs on NumPy through it. What is checked
is the ring's safety (a buffer is never rewritten while a copy or a kernel may still use it),
that the compute stream -- not the host -- waits for each copy, and that the rectified frames
are cv2's. ``test_gpu_engine.py``'s ``gpu``-marked remap test runs the real thing on a GPU.
"""

from __future__ import annotations

import types

import numpy as np

from ivy_gpu.engines.upload import FrameUploader
from ivy_gpu.engines.xp_engine import XpEngine


class _Device(np.ndarray):
    """A 'device' array: NumPy memory with CuPy's ``set(host, stream=)``."""

    def set(self, host, stream=None):
        self.log.append(("set", self.slot, stream.name))
        self[...] = host


def _stand_in():
    log: list[tuple] = []
    slots = iter(range(100))

    class Stream:
        def __init__(self, non_blocking=False, name="copy"):
            assert non_blocking or name == "compute"
            self.name = name

        def wait_event(self, event):
            log.append(("wait", self.name, event.name))

    compute = Stream(name="compute")
    count = iter(range(1000))

    class Event:
        def __init__(self):
            self.name = None

        def record(self, stream):
            self.name = f"{stream.name}#{next(count)}"
            log.append(("record", self.name))

        def synchronize(self):
            log.append(("host waits", self.name))

    def empty(shape, dtype):
        a = np.zeros(shape, dtype).view(_Device)
        a.log, a.slot = log, next(slots)
        return a

    def empty_pinned(shape, dtype):
        log.append(("pinned", shape))
        return np.zeros(shape, dtype)

    xp = types.SimpleNamespace(
        empty=empty,
        cuda=types.SimpleNamespace(Stream=Stream, Event=Event, get_current_stream=lambda: compute),
    )
    return xp, empty_pinned, log


def test_the_ring_never_rewrites_a_buffer_in_use():
    xp, pinned, log = _stand_in()
    up = FrameUploader(xp, empty_pinned=pinned)
    frames = [np.full((3, 4), k, np.uint8) for k in range(4)]
    for k, f in enumerate(frames):
        dev = up.upload(f)
        assert np.array_equal(dev, f)  # the device buffer holds this frame
        log.append(("kernel reads", dev.slot, k))
        up.release()
    assert up.count == 4 and log.count(("pinned", (3, 4))) == 2  # two slots, allocated once
    at = [i for i, e in enumerate(log) if e[0] == "set"]  # positions of the four copies
    sets = [log[i] for i in at]
    assert [s[1] for s in sets] == [0, 1, 0, 1] and {s[2] for s in sets} == {"copy"}
    # every kernel runs after the compute stream waited for its frame's copy
    for k in range(4):
        read = log.index(("kernel reads", k % 2, k))
        waits = [i for i, e in enumerate(log[:read]) if e[:2] == ("wait", "compute")]
        copy_event = log[waits[-1]][2]
        assert copy_event.startswith("copy#")
        assert at[k] < log.index(("record", copy_event)) < read
    # the host never waits for a kernel; it waits for a copy only before reusing a slot
    host_waits = [e for e in log if e[0] == "host waits"]
    assert len(host_waits) == 2 and all(w[1].startswith("copy#") for w in host_waits)
    # slot 0's second upload: after the host saw its first copy end, and after the copy
    # stream waited for the kernel that read it (frame 0)
    released = [e[1] for e in log if e[0] == "record" and e[1].startswith("compute#")]
    assert log.index(("wait", "copy", released[0])) < at[2]
    assert log.index(("kernel reads", 0, 0)) < log.index(("record", released[0]))
    assert log.index(host_waits[0]) < at[2]


def test_a_new_frame_size_reallocates_the_ring():
    xp, pinned, log = _stand_in()
    up = FrameUploader(xp, empty_pinned=pinned)
    up.upload(np.ones((3, 4), np.uint8))
    up.release()
    dev = up.upload(np.full((5, 2), 7, np.uint8))
    assert dev.shape == (5, 2) and (dev == 7).all()
    assert [e for e in log if e[0] == "pinned"] == [("pinned", (3, 4))] * 2 + [
        ("pinned", (5, 2))
    ] * 2


def test_the_engine_rectifies_through_the_ring():
    """The GPU engine's remap fed by the uploader: frame for frame what a direct upload gives."""
    from ivy_gpu.scaffold.rectify import RectificationParams, Rectifier
    from ivy_gpu.synthetic.sites import Site, SiteSpec

    site = Site(SiteSpec(width_px=160, height_px=90))
    params = RectificationParams(
        "camera matrix", camera_matrix=site.camera.matrix, extent=site.extent
    )
    rect = Rectifier(params, site.spec.wse_m, (160, 90))
    xp, pinned, log = _stand_in()
    ring = XpEngine(np, False, uploaders=lambda: FrameUploader(xp, empty_pinned=pinned))
    direct = XpEngine(np, use_cuda_kernels=False)
    assert direct.uploader is None  # NumPy: frames are used as they are
    rng = np.random.default_rng(2)
    frames = [rng.integers(0, 256, (90, 160), dtype=np.uint8) for _ in range(3)]
    got = np.zeros((3, *rect.output_shape), np.uint8)
    want = np.zeros_like(got)
    for i, f in enumerate(frames):
        ring.remap(f, rect, got[i])
        direct.remap(f, rect, want[i])
    assert ring.uploader.count == 3 and np.array_equal(got, want) and got.any()


def test_each_thread_rectifies_through_its_own_ring():
    """A batch loads the next video on a second thread while this one is rectified: both go
    through one engine, each with its own ring and its own tables kept on the device."""
    import threading

    from ivy_gpu.scaffold.rectify import RectificationParams, Rectifier
    from ivy_gpu.synthetic.sites import Site, SiteSpec

    site = Site(SiteSpec(width_px=160, height_px=90))
    params = RectificationParams(
        "camera matrix", camera_matrix=site.camera.matrix, extent=site.extent
    )
    rects = [Rectifier(params, site.spec.wse_m + dz, (160, 90)) for dz in (0.0, 0.3)]
    rings = []

    def make():
        xp, pinned, _ = _stand_in()
        rings.append(FrameUploader(xp, empty_pinned=pinned))
        return rings[-1]

    engine = XpEngine(np, False, uploaders=make)
    direct = XpEngine(np, False)
    rng = np.random.default_rng(3)
    frames = [[rng.integers(0, 256, (90, 160), dtype=np.uint8) for _ in range(12)] for _ in rects]
    got = [np.zeros((12, *r.output_shape), np.uint8) for r in rects]
    start = threading.Barrier(2)

    def load(k):
        start.wait()
        for i, f in enumerate(frames[k]):
            engine.remap(f, rects[k], got[k][i])

    threads = [threading.Thread(target=load, args=(k,)) for k in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(rings) == 2 and [r.count for r in rings] == [12, 12]
    for k, r in enumerate(rects):
        want = np.zeros_like(got[k])
        for i, f in enumerate(frames[k]):
            direct.remap(f, r, want[i])
        assert np.array_equal(got[k], want)
    assert {id(r) for r in rects} <= set(engine._coords)  # both tables kept
