"""Space-Time Image Velocimetry: exhaustive search over search-line angles.

The public entry points are :func:`stiv_exhaustive` (keyword arguments, the
documented contract) and :func:`run_stiv` (a :class:`~ivy_gpu.params.StivParams`).
Both follow the conventions of the domain specification (section 8) with the fixes
of section 14: invalid search lines give NaN (never 0), a negative streak turns the
direction by 180 degrees, and ``sigma`` is a spatial Gaussian blur of that sigma.

A call reads as the computation does: :func:`line_geometry` places every (node,
angle) search line and the stack crop they read; the engine prepares that crop once;
:func:`score_pairs` scores the pairs in memory-sized chunks with the chosen method;
:func:`reduce_nodes` keeps the best angle of each node and turns it into a velocity.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ivy_gpu.angles import ari_to_geo
from ivy_gpu.checks import check_nodes, check_positive, check_stack
from ivy_gpu.engines import backends
from ivy_gpu.engines.base import Engine, Lines, PairLines, chunk_of, len_of
from ivy_gpu.kernels import rays
from ivy_gpu.params import INTERPOLATIONS, METHODS, StivParams
from ivy_gpu.stiv.lines import SearchLines, line_geometry, line_taps, scored_lines
from ivy_gpu.stiv.methods import METHODS as METHOD_OBJECTS
from ivy_gpu.stiv.methods import StivMethod, parabola_offset

__all__ = [
    "INTERPOLATIONS",
    "METHODS",
    "StivResult",
    "reduce_nodes",
    "run_stiv",
    "run_stiv_windows",
    "stride_for",
    "score_pairs",
    "stiv_exhaustive",
]


@dataclass(frozen=True)
class StivResult:
    """Per-node result of :func:`stiv_exhaustive` (all arrays have one value per node).

    Attributes
    ----------
    magnitude : ndarray
        Surface speed, m/s, >= 0; NaN where no search line was valid or the speed
        exceeded ``max_vel_threshold``.
    direction : ndarray
        Geographic direction the surface moves, degrees in [0, 360); NaN where no
        search line was valid.
    theta : ndarray
        Streak angle of the best STI, degrees (0 = no motion, 90 = infinite).
    score : ndarray
        Peak ray integral of the best angle (``method="acf"``) or its orientation
        coherence (``method="gradient"``).
    phi : ndarray
        Geographic orientation of the best search line, degrees in [0, 360).
    sti : ndarray or None
        Best raw STI per node, shape (nodes, P, frames), when ``return_sti=True``.
    backend : str
        Backend that ran.
    method : str
        ``"acf"`` or ``"gradient"``.
    valid_line : ndarray of bool
        Nodes with at least one usable search line.
    over_threshold : ndarray of bool
        Nodes whose speed exceeded ``max_vel_threshold`` (magnitude set to NaN).
    fan_edge : ndarray of bool
        Nodes whose best search angle is the first or last of the fan.
    best_phi_ari : ndarray
        The best search angle on the fan's grid, arithmetic degrees (before refinement).
    stride : ndarray of int
        Temporal stride each node's velocity was measured with (1: every frame).
    stride_limited : ndarray of bool
        Slow nodes that needed a stride but the clip had too few frames for it.
    """

    magnitude: np.ndarray
    direction: np.ndarray
    theta: np.ndarray
    score: np.ndarray
    phi: np.ndarray
    sti: np.ndarray | None
    backend: str
    method: str
    valid_line: np.ndarray | None = None
    over_threshold: np.ndarray | None = None
    fan_edge: np.ndarray | None = None
    best_phi_ari: np.ndarray | None = None
    stride: np.ndarray | None = None
    stride_limited: np.ndarray | None = None


def score_pairs(
    engine: Engine,
    method: StivMethod,
    handle: Any,
    lines: SearchLines,
    batch: Lines,
    plan: Any,
    n_frames: int,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Score every usable (node, angle) pair in memory-sized chunks.

    ``batch`` is what :func:`~ivy_gpu.stiv.lines.scored_lines` gives for ``lines``: host
    taps, or the lines' geometry for an engine that computes taps on the device. Returns
    ``(score, aux)``, each of shape (nodes * angles,), NaN where a line is unusable.
    """
    s, a = score_batch(engine, method, handle, batch, plan, n_frames)
    return _on_lines(lines, method, s, a)


def _on_lines(
    lines: SearchLines, method: StivMethod, s: np.ndarray, a: dict[str, np.ndarray]
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Scores of the usable pairs placed on every (node, angle) line (NaN where unusable)."""
    score = np.full(lines.n_lines, np.nan)
    score[lines.pairs] = s
    aux = {}
    for k in method.aux_keys:
        aux[k] = np.full(lines.n_lines, np.nan)
        aux[k][lines.pairs] = a[k]
    return score, aux


def score_batch(
    engine: Engine, method: StivMethod, handle: Any, batch: Lines, plan: Any, n_frames: int
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """``(score, aux)`` of every line of ``batch`` (in its order), in memory-sized chunks."""
    n = len_of(batch)
    score = np.full(n, np.nan)
    aux = {k: np.full(n, np.nan) for k in method.aux_keys}
    chunk = engine.chunk_pairs(_num_pixels(batch), n_frames)
    for lo in range(0, n, chunk):
        part = plan.chunk(lo, lo + chunk) if isinstance(plan, rays.PlanGroups) else plan
        s, a = method.score(engine, handle, chunk_of(batch, lo, lo + chunk), part)
        score[lo : lo + chunk] = s
        for k in method.aux_keys:
            aux[k][lo : lo + chunk] = a[k]
    return score, aux


def _num_pixels(batch: Lines) -> int:
    return batch.num_pixels if isinstance(batch, PairLines) else int(batch[0].shape[1])


def reduce_nodes(
    method: StivMethod,
    score: np.ndarray,
    aux: dict[str, np.ndarray],
    lines: SearchLines,
    params: StivParams,
    plan: Any,
    pixel_gsd: float,
    d_t: float,
) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """Best angle of each node and its velocity.

    Returns
    -------
    fields : dict
        ``magnitude``, ``direction``, ``theta``, ``score``, ``phi`` per node.
    best : ndarray of int
        Index of the best search angle of each node.
    has : ndarray of bool
        Nodes with at least one valid line.
    """
    n_ang = lines.phis.shape[1]
    score = score.reshape(-1, n_ang)
    n_nodes = score.shape[0]
    has = np.isfinite(score).any(axis=1)
    best = np.where(np.isfinite(score), score, -np.inf).argmax(axis=1)
    rows = np.arange(n_nodes)
    flat = rows * n_ang + best
    theta, slope = method.slope(
        {k: v[flat] for k, v in aux.items()}, score[rows, best], params, plan
    )

    phi = lines.phis[rows, best].astype(np.float64)
    if params.refine:
        before = np.where(best > 0, score[rows, np.maximum(best - 1, 0)], np.nan)
        after = np.where(best < n_ang - 1, score[rows, np.minimum(best + 1, n_ang - 1)], np.nan)
        step = params.d_phi * parabola_offset(before, score[rows, best], after)
        phi = phi + step
        slope = slope / np.cos(np.deg2rad(step))  # the line at phis[best] saw V cos(step)

    speed = slope * pixel_gsd / d_t
    direction = ari_to_geo(phi + np.where(speed < 0, 180.0, 0.0))
    magnitude = np.abs(speed)
    over = has & ~(magnitude <= params.max_vel_threshold)
    magnitude[over] = np.nan
    for arr in (magnitude, direction, theta, phi):
        arr[~has] = np.nan
    fields = {
        "magnitude": magnitude,
        "direction": np.where(has, direction, np.nan),
        "theta": theta,
        "score": np.where(has, score[rows, best], np.nan),
        "phi": np.where(has, ari_to_geo(phi), np.nan),
        "valid_line": has,
        "over_threshold": over,
        "fan_edge": has & (n_ang > 1) & ((best == 0) | (best == n_ang - 1)),
        "best_phi_ari": np.where(has, lines.phis[rows, best], np.nan),
    }
    return fields, best, has


def run_stiv(
    stack: Any,
    x: np.ndarray,
    y: np.ndarray,
    params: StivParams,
    *,
    pixel_gsd: float,
    d_t: float,
    backend: str | Engine = "auto",
    return_sti: bool = False,
    phis: np.ndarray | None = None,
    lag_step: int = 1,
) -> StivResult:
    """Measure surface velocity at each node by exhaustive STIV (see :func:`stiv_exhaustive`).

    ``backend`` is a name (resolved through :mod:`ivy_gpu.engines.backends`) or an engine.
    ``phis`` (arithmetic degrees, (nodes, k)) searches each node's own angles instead of
    the fan (the quality windows re-measure each node's best line this way).
    ``lag_step`` k > 1 measures streaks over k frames per step on every frame (the ACF's
    temporal stride, :class:`ivy_gpu.kernels.rays.AcfPlan`); ``d_t`` is then the time of
    k frames.
    """
    check_stack(stack)
    n_frames, height, width = stack.shape
    nodes = check_nodes(x, y, width, height)
    gsd = check_positive("pixel_gsd", pixel_gsd)
    d_t = check_positive("d_t", d_t)
    engine = backends.get_engine(backend) if isinstance(backend, str) else backend
    method = METHOD_OBJECTS[params.method]

    lines = line_geometry(nodes, params, width, height, phis)
    plan = method.plan(params.num_pixels, n_frames // lag_step, params, lag_step)
    handle = None
    if lines.pairs.size:
        batch = scored_lines(lines, params, engine.device_lines)
        handle = engine.prepare(stack, lines.window, params.sigma, batch)
        score, aux = score_pairs(engine, method, handle, lines, batch, plan, n_frames)
    else:
        n = lines.n_lines
        score, aux = np.full(n, np.nan), {k: np.full(n, np.nan) for k in method.aux_keys}
    fields, best, has = reduce_nodes(method, score, aux, lines, params, plan, gsd, d_t)

    if params.stride and params.search_line == "unit" and params.method == "acf":
        fields = apply_stride(stack, nodes, params, fields, gsd, d_t, engine)

    stis = None
    if return_sti:
        stis = np.full((nodes.shape[0], params.num_pixels, n_frames), np.nan, dtype=np.float32)
        if has.any() and handle is not None:
            k = np.flatnonzero(has)
            sx, sy = lines.sx[k, best[k]], lines.sy[k, best[k]]
            taps = line_taps(lines, sx, sy, params.interpolation)
            stis[k] = engine.gather(handle, taps)
    return StivResult(sti=stis, backend=engine.name, method=params.method, **fields)


#: Search angles re-measured on each side of a slow node's best one (the direction of a slow
#: streak is poorly resolved at full frame rate, so the strided search looks a little wider).
STRIDE_FAN = 4


def stride_for(
    slope_px: np.ndarray, n_frames: int, num_pixels: int = 32
) -> tuple[np.ndarray, np.ndarray]:
    """Temporal stride per node and whether the clip limited it.

    A node moving ``slope_px`` < ``config.STRIDE_BELOW_PX`` pixels per frame gets
    ``k = ceil(target / slope_px)``, the target being ``config.STRIDE_TARGET_PX`` or, on lines
    shorter than ``STRIDE_SHORT_LINE``, ``STRIDE_TARGET_SHORT_PX`` (short rays want longer
    steps), at most ``config.STRIDE_MAX`` and at most what leaves ``STRIDE_MIN_FRAMES``
    steps of k frames; ``limited`` marks nodes whose wanted stride the clip could not give
    (they keep the largest stride it allows).
    """
    from ivy_gpu import config

    short = num_pixels < config.STRIDE_SHORT_LINE
    target = config.STRIDE_TARGET_SHORT_PX if short else config.STRIDE_TARGET_PX
    s = np.abs(np.asarray(slope_px, float))
    slow = np.isfinite(s) & (s < config.STRIDE_BELOW_PX)
    with np.errstate(divide="ignore", invalid="ignore"):
        wanted = np.where(slow, np.ceil(target / np.maximum(s, 1e-6)), 1.0)
    wanted = np.minimum(wanted, config.STRIDE_MAX).astype(int)
    allowed = max(1, n_frames // config.STRIDE_MIN_FRAMES)
    k = np.minimum(wanted, allowed)
    return k, slow & (k < wanted)


def apply_stride(
    stack: Any,
    nodes: np.ndarray,
    params: StivParams,
    fields: dict[str, np.ndarray],
    pixel_gsd: float,
    d_t: float,
    engine: Engine,
) -> dict[str, np.ndarray]:
    """Re-measure slow nodes at a temporal stride k (best line and ``STRIDE_FAN`` on each side).

    The reference formulation reads shallow streaks low (-1.2 % at 1 px/frame, -18 % at
    0.1 px/frame on synthetic truth); with the stride the streak moves about 1.5 to 3 px
    (2 to 4 px on lines shorter than 32 px) per step of k frames, where the mean over nodes
    is unbiased to within 1 %. Every frame is used: the
    autocorrelation of the full STI is read at frame lags ``k * m`` (the k strided phases
    summed, :class:`ivy_gpu.kernels.rays.AcfPlan`), not one phase of every k-th frame.
    Speed, direction and search angle of those nodes are replaced; ``theta`` and ``score``
    stay those of the full-rate search.

    An engine that takes lines as geometry scores the slow nodes of every step in **one**
    call: one crop, one gather and one autocorrelation of all their lines, each step's span
    of lines with its own rays (:class:`~ivy_gpu.kernels.rays.PlanGroups`). The CPU engines
    score each step on its own crop (the slow nodes of two steps may lie far apart, and a
    CPU crop is a copy of everything between them).
    """
    n_frames = stack.shape[0]
    slope = fields["magnitude"] * d_t / pixel_gsd
    k, limited = stride_for(slope, n_frames, params.num_pixels)
    fields = dict(fields, stride=np.ones(len(k), int), stride_limited=limited)
    slow = np.flatnonzero(k > 1)
    if not slow.size:
        return fields
    slow = slow[np.argsort(k[slow], kind="stable")]  # each step's nodes, then its lines, in a row
    calls = [slow] if engine.device_lines else [slow[k[slow] == s] for s in np.unique(k[slow])]
    replaced = ("magnitude", "direction", "phi")
    fields.update({name: fields[name].copy() for name in replaced})
    for g_nodes in calls:
        found = _strided_speeds(stack, nodes[g_nodes], fields["best_phi_ari"][g_nodes],
                                k[g_nodes], params, pixel_gsd, d_t, engine)  # fmt: skip
        ok = np.isfinite(found["magnitude"])
        for name in replaced:
            fields[name][g_nodes[ok]] = found[name][ok]
        fields["stride"][g_nodes[ok]] = k[g_nodes[ok]]
        fields["stride_limited"][g_nodes[~ok]] = True  # no streak at this stride: kept as measured
    return fields


def _strided_speeds(
    stack: Any,
    nodes: np.ndarray,
    best_phi: np.ndarray,
    k: np.ndarray,
    params: StivParams,
    pixel_gsd: float,
    d_t: float,
    engine: Engine,
) -> dict[str, np.ndarray]:
    """:func:`reduce_nodes` fields of ``nodes`` (sorted by their step ``k``) in one call."""
    n_frames, height, width = stack.shape
    sub = params.replace(stride=False)
    offsets = params.d_phi * np.arange(-STRIDE_FAN, STRIDE_FAN + 1.0)
    lines = line_geometry(nodes, sub, width, height, best_phi[:, None] + offsets[None, :])
    method = METHOD_OBJECTS[sub.method]
    steps, first = np.unique(k, return_index=True)
    node_bounds = np.append(first, len(k))
    plans = rays.PlanGroups(
        tuple(method.plan(sub.num_pixels, n_frames // int(s), sub, int(s)) for s in steps),
        tuple(int(b) for b in np.searchsorted(lines.pairs, node_bounds * len(offsets))),
    )
    n = lines.n_lines
    score, aux = np.full(n, np.nan), {q: np.full(n, np.nan) for q in method.aux_keys}
    if lines.pairs.size:
        batch = scored_lines(lines, sub, engine.device_lines)
        handle = engine.prepare(stack, lines.window, sub.sigma, batch)
        score, aux = score_pairs(engine, method, handle, lines, batch, plans, n_frames)
    step_of_line = np.repeat(k, len(offsets))
    out = {q: np.full(len(k), np.nan) for q in ("magnitude", "direction", "phi")}
    for g, step in enumerate(steps):
        mine = step_of_line == step
        r, _, _ = reduce_nodes(
            method, np.where(mine, score, np.nan),
            {q: np.where(mine, v, np.nan) for q, v in aux.items()},
            lines, sub, plans.plans[g], pixel_gsd, d_t * step,
        )  # fmt: skip
        rows = slice(node_bounds[g], node_bounds[g + 1])
        for q in out:
            out[q][rows] = r[q][rows]
    return out


def run_stiv_windows(
    stack: Any,
    x: np.ndarray,
    y: np.ndarray,
    params: StivParams,
    windows: list[tuple[int, int]],
    phis: np.ndarray,
    *,
    pixel_gsd: float,
    d_t: float,
    backend: str | Engine = "auto",
) -> list[StivResult]:
    """STIV of each node's own angles (``phis``) in several time windows of one stack.

    The crop the lines read is prepared once; each window is a view of it in time, so
    re-measuring a few lines per node in K windows costs K small scoring passes and no
    further copies of the stack. An engine that takes lines as geometry scores windows of
    one length in **one** pass: every line once per window, each with its first frame
    (:meth:`~ivy_gpu.engines.base.PairLines.in_windows`), in the same launches.
    """
    check_stack(stack)
    _, height, width = stack.shape
    nodes = check_nodes(x, y, width, height)
    engine = backends.get_engine(backend) if isinstance(backend, str) else backend
    method = METHOD_OBJECTS[params.method]
    lines = line_geometry(nodes, params, width, height, phis)
    out = []
    n = lines.n_lines
    handle = None
    if lines.pairs.size:
        batch = scored_lines(lines, params, engine.device_lines)  # one for every window
        handle = engine.prepare(stack, lines.window, params.sigma, batch)
    plans: dict[int, Any] = {}
    lengths = {stop - start for start, stop in windows}
    batched: list[tuple[np.ndarray, dict[str, np.ndarray]]] = []
    if handle is not None and isinstance(batch, PairLines) and len(lengths) == 1:
        frames = lengths.pop()  # every window in one pass, window-major
        plans[frames] = method.plan(params.num_pixels, frames, params)
        view = engine.time_slice(handle, 0, frames)
        starts = [start for start, _ in windows]
        s, a = score_batch(engine, method, view, batch.in_windows(starts), plans[frames], frames)
        m = len(batch)
        batched = [
            _on_lines(lines, method, s[k * m : (k + 1) * m], {q: v[k * m : (k + 1) * m]
                                                             for q, v in a.items()})
            for k in range(len(windows))
        ]  # fmt: skip
    for i, (start, stop) in enumerate(windows):
        frames = stop - start
        if frames not in plans:  # windows of one length share their plan
            plans[frames] = method.plan(params.num_pixels, frames, params)
        plan = plans[frames]
        if batched:
            score, aux = batched[i]
        elif handle is not None:
            view = engine.time_slice(handle, start, stop)
            score, aux = score_pairs(engine, method, view, lines, batch, plan, frames)
        else:
            score, aux = np.full(n, np.nan), {k: np.full(n, np.nan) for k in method.aux_keys}
        fields, _, _ = reduce_nodes(method, score, aux, lines, params, plan, pixel_gsd, d_t)
        out.append(StivResult(sti=None, backend=engine.name, method=params.method, **fields))
    return out


def stiv_exhaustive(
    stack: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    *,
    num_pixels: int,
    phi_origin: float,
    d_phi: float,
    phi_range: float,
    pixel_gsd: float,
    d_t: float,
    d_rho: float = 0.5,
    d_theta: float = 0.5,
    sigma: float = 0.0,
    max_vel_threshold: float = 10.0,
    interpolation: str = "bilinear",
    refine: bool = False,
    backend: str = "auto",
    method: str = "acf",
    return_sti: bool = False,
    search_line: str = "unit",
    stride: bool = False,
) -> StivResult:
    """Measure surface velocity at each node by exhaustive STIV.

    Parameters
    ----------
    stack : ndarray, shape (frames, rows, cols), uint8 or float32
        Rectified grayscale frames in time order.
    x, y : array_like of float
        Node positions in stack pixels (column, row).
    num_pixels : int
        Search-line length P in pixels (even, >= 4).
    phi_origin : float
        Centre of the search fan, geographic degrees.
    d_phi : float
        Fan step, degrees (> 0).
    phi_range : float
        Fan half-width, degrees, in [0, 180].
    pixel_gsd : float
        Ground size of a stack pixel, metres.
    d_t : float
        Time between frames, seconds.
    d_rho, d_theta : float
        Ray step (lags) and ray-angle step (degrees) of the ACF search.
    sigma : float
        Spatial Gaussian blur sigma in pixels; 0 disables it.
    max_vel_threshold : float
        Speeds above this (m/s) become NaN.
    interpolation : {"bilinear", "nearest"}
        Sampling along the search line (``"nearest"`` is IVyTools' own).
    refine : bool
        Sub-step parabolic refinement of the streak angle and the search angle.
        ``False`` reproduces the reference grid search exactly.
    backend : {"auto", "numpy", "numba", "cupy"}
        Compute backend; ``auto`` uses the GPU when one is usable.
    method : {"acf", "gradient"}
        Streak angle from the autocorrelation rays (reference) or from the
        gradient structure tensor (fast alternative).
    return_sti : bool
        Also return the best raw STI of every node.
    search_line : {"unit", "ivytools"}
        ``unit``: 1-px sample spacing on every line. ``ivytools``: IVyTools' exact line
        geometry (stretched lines included; with ``interpolation="nearest"`` it
        reproduces the IVyTools python port, with ``"bilinear"`` the MATLAB original).
    stride : bool
        Re-measure slow nodes at k frames per step (:func:`apply_stride`; the pipeline's
        default). ``False`` keeps the reference formulation's result.

    Returns
    -------
    StivResult

    Raises
    ------
    ValueError
        Bad argument (named in the message), an unknown backend, or ``backend="cupy"``
        without a usable GPU.

    Examples
    --------
    >>> from ivy_gpu.synthetic.scenes import advected_texture
    >>> stack = advected_texture((120, 96, 96), speed_px=1.0, direction_geo=90.0, seed=0)
    >>> r = stiv_exhaustive(stack, [48.0], [48.0], num_pixels=32, phi_origin=90, d_phi=1,
    ...                     phi_range=5, pixel_gsd=0.1, d_t=0.1, backend="numpy")
    >>> round(float(r.magnitude[0]), 2), bool(abs(r.direction[0] - 90.0) <= 1.0)
    (1.0, True)
    """
    params = StivParams(
        num_pixels=num_pixels,
        phi_origin=phi_origin,
        phi_range=phi_range,
        d_phi=d_phi,
        max_vel_threshold=max_vel_threshold,
        sigma=sigma,
        method=method,
        interpolation=interpolation,
        d_rho=d_rho,
        d_theta=d_theta,
        refine=refine,
        search_line=search_line,
        stride=stride,
    )
    return run_stiv(
        stack, x, y, params, pixel_gsd=pixel_gsd, d_t=d_t, backend=backend, return_sti=return_sti
    )
