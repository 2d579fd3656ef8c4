"""A file's video stream -> RGB frames as ffmpeg's ``fps`` filter picks them (see
``sample_grid``), resized with FFmpeg's bicubic scaler: one window of them (``load_frames``)
or every one, in order (``_grid_frames``).

One reader over two backends (``_frames``): decord first, whose resize is the one the
released video features were made with; PyAV for what decord cannot read or shows wrongly
(AV1, rotated phone videos, broken indexes, a Python without decord's wheels), from the
output where decord stopped.
"""
from __future__ import annotations

import itertools
import math
import os
from contextlib import closing
from typing import Optional

import numpy as np

from .gate import DEMUXERS, MediaError, open_media, probe, scaled_size

HOLD_S = 10.0  # a frame stands for at most this long: a longer gap in a video stream is missing video


def sample_grid(timestamps: np.ndarray, end: float, fps: float, start: float, seconds: float) -> tuple:
    """The outputs ffmpeg's ``fps`` filter would give for [start, start + seconds) -> (ks, idx):
    output numbers k (time k / fps) and the index of the input frame each shows.

    Output k is the last input frame whose timestamp is below (k + 0.5) / fps; outputs stop at
    the end of the stream, and no frame stands for more than ``HOLD_S``: where a stream's next
    frame comes later than that, the outputs between are missing, not made up (a file whose
    timestamps jump hours ahead costs what its frames cost, not hours of repeated frames).
    ``timestamps`` are the frames' presentation times in seconds from the stream's first frame,
    ascending; ``end`` the time the last frame stops showing.
    """
    none = np.zeros(0, np.int64)
    if len(timestamps) == 0:
        return none, none
    ts = np.asarray(timestamps, np.float64)
    k0 = int(round(start * fps))
    lo, hi = k0, min(k0 + int(math.ceil(seconds * fps - 1e-9)), int(math.ceil(end * fps - 1e-9)))
    # stretches without a gap longer than HOLD_S: outputs are only looked for within them
    cut = np.flatnonzero(np.diff(ts) > HOLD_S) + 1
    firsts, lasts = np.r_[0, cut], np.r_[cut - 1, len(ts) - 1]
    ks, idx = [], []
    for a, b in zip(firsts, lasts):
        until = min(ts[b] + HOLD_S, ts[b + 1] if b + 1 < len(ts) else end, end)
        k_lo = max(lo, int(math.floor(ts[a] * fps - 0.5)) - 1, 0)
        k_hi = min(hi, int(math.ceil(until * fps)) + 1)
        if k_hi <= k_lo:
            continue
        k = np.arange(k_lo, k_hi)
        i = np.clip(np.searchsorted(ts, (k + 0.5) / fps - 1e-6, side="left") - 1, 0, len(ts) - 1)
        keep = (i >= a) & (i <= b) & ((k + 0.5) / fps - ts[i] <= HOLD_S + 1e-9) & (k / fps < end - 1e-9)
        ks.append(k[keep])
        idx.append(i[keep])
    if not ks:
        return none, none
    return np.concatenate(ks).astype(np.int64), np.concatenate(idx).astype(np.int64)


def sample_times(timestamps: np.ndarray, end: float, fps: float, start: float, seconds: float) -> np.ndarray:
    """Indices of the input frames ``sample_grid`` picks for the window, in output order."""
    return sample_grid(timestamps, end, fps, start, seconds)[1]


def plausible_times(ts: np.ndarray) -> bool:
    """Do a decoder's frame timestamps make sense (finite, ascending, within a day or so of
    media)? decord reports INT64_MAX for some Matroska files: PyAV decodes those instead."""
    ts = np.asarray(ts, np.float64)
    return bool(len(ts) and np.isfinite(ts).all() and np.abs(ts).max() < 1e7
                and (len(ts) < 2 or (np.diff(ts[:, 0] if ts.ndim == 2 else ts) > -1e-6).all()))


def load_frames(path, fps: float = 3.0, short_side: int = 224, start: float = 0.0,
                seconds: float = 10.0) -> Optional[np.ndarray]:
    """(K, H, W, 3) uint8 RGB frames sampled at ``fps`` over the window, or None if no video.

    decord first (its resize is the one the released features were made with); PyAV for
    what decord cannot read or shows wrongly (AV1, rotated phone videos, broken indexes)."""
    info = probe(path)
    if not info.has_video:
        return None
    n = int(math.ceil(seconds * fps - 1e-9))
    with closing(_frames(path, info, fps, short_side, start, seconds, batch=None)) as outputs:
        out = [img for _, img in itertools.islice(outputs, n)]
    w, h = _display_size(info, short_side)
    return np.stack(out) if out else np.zeros((0, h, w, 3), np.uint8)


def _grid_frames(path, info, fps, short_side, ends: dict, batch: int = 15):
    """Yield (k, frame) for every output of the fps filter over the whole video stream, k = 0,
    1, ...: each the very frame ``load_frames`` gives for any window that holds output k (the
    outputs depend on the stream's timestamps only, never on the window). ``ends["video"]``:
    where the stream ends, once it has."""
    return _frames(path, info, fps, short_side, ends=ends, batch=batch)


DECORD_CANNOT = {"av1", "libdav1d", "libaom-av1"}


def _frames(path, info, fps, short_side, start: float = 0.0, seconds: Optional[float] = None,
            ends: Optional[dict] = None, batch: Optional[int] = 15):
    """The one reader: yield (k, frame) for the fps filter's outputs from k = round(start *
    fps) on, to the end of the stream. decord where it can (it stops at the end of the window
    [start, start + seconds) when ``seconds`` is given, and reads ``batch`` outputs at a time,
    None: all at once); PyAV for what decord cannot read or shows wrongly, from the output
    where decord stopped (it goes on to the end of the stream: the caller takes what it
    needs). ``ends["video"]``: where the stream ends, once it has."""
    if info.width <= 0 or info.height <= 0:
        raise MediaError(f"{path}: the video stream has no frame size")
    nxt = int(round(start * fps))
    if info.rotation % 360 == 0 and info.codec not in DECORD_CANNOT:
        try:
            for k, img in _decord_frames(path, info, fps, short_side, start, seconds, ends, batch):
                yield k, img
                nxt = k + 1
            return
        except MediaError:
            pass  # PyAV from output nxt on
    yield from _pyav_grid(path, info, fps, short_side, nxt, ends)


def _decord_frames(path, info, fps, short_side, start, seconds, ends, batch):
    """decord's side of ``_frames``; a MediaError where decord cannot read the stream, or
    not installed (a Python without its wheels): PyAV decodes then, whose resize differs
    slightly from the released features' (decord's)."""
    try:
        import decord
    except ImportError:
        raise MediaError(f"{path}: decord is not installed") from None

    w, h = scaled_size(info.width, info.height, short_side)
    if info.container.split(",")[0] not in DEMUXERS:  # decord's FFmpeg has no whitelist: PyAV's gate first
        raise MediaError(f"{path}: container {info.container!r} is not read")

    def failed(e):
        why = (str(e).strip().splitlines() or [type(e).__name__])[0][:120]
        return MediaError(f"{path}: the video stream cannot be decoded ({why})")

    try:
        vr = decord.VideoReader(os.path.abspath(path), ctx=decord.cpu(0), width=w, height=h, num_threads=1)
        n = len(vr)
        ts = vr.get_frame_timestamp(np.arange(n)) if n else np.zeros((0, 2))
    except Exception as e:  # decord raises its own and generic errors; PyAV gets a second try
        raise failed(e) from None
    if n == 0:
        if ends is not None:
            ends["video"] = 0.0
        return
    if not plausible_times(ts):
        raise MediaError(f"{path}: decord's frame times are not plausible")  # PyAV decodes it
    starts, end = ts[:, 0] - ts[0, 0], float(ts[-1, 1] - ts[0, 0])
    ks, idx = sample_grid(starts, end, fps, start, end + 1.0 if seconds is None else seconds)  # gaps left out
    step = batch or max(len(ks), 1)
    for at in range(0, len(ks), step):  # `step` outputs at a time: each frame decoded once
        try:
            uniq, where = np.unique(idx[at:at + step], return_inverse=True)
            frames = vr.get_batch(list(uniq)).asnumpy()
        except Exception as e:
            raise failed(e) from None
        for k, i in zip(ks[at:at + step], where.reshape(-1)):
            yield int(k), frames[i]
    if ends is not None:
        ends["video"] = end


def _display_size(info, short_side) -> tuple[int, int]:
    rot = info.rotation % 360
    w0, h0 = (info.height, info.width) if rot in (90, 270) else (info.width, info.height)
    return scaled_size(w0, h0, short_side)


def _pyav_grid(path, info, fps, short_side, k0: int = 0, ends: Optional[dict] = None):
    """Yield (k, frame) for the fps filter's outputs k0, k0 + 1, ... to the end of the stream.
    Streams the frames once from the start, keeping for each output time the last frame before
    it (the rule of ``sample_times``), resized with FFmpeg's bicubic scaler, rotation applied;
    ``ends["video"]``: where the stream ends (its last frame's end), once it has."""
    import av

    rot = info.rotation % 360
    w, h = _display_size(info, short_side)
    k, last, t0, step = k0, None, None, 0.0
    try:
        with open_media(path) as c:
            s = c.streams.video[0]
            s.thread_type = "AUTO"
            for f in c.decode(s):
                t = f.time if f.time is not None else (0.0 if last is None else last[0] + 1 / 30)
                t0 = t if t0 is None else t0
                t -= t0
                while t >= (k + 0.5) / fps - 1e-6:
                    if last is None:  # no frame before this output yet: ffmpeg repeats the first
                        last = (t, f)
                    if (k + 0.5) / fps - last[0] > HOLD_S + 1e-9:  # a gap: on to this frame's first output
                        k = max(k + 1, int(math.floor(t * fps - 0.5 + 1e-6 * fps)) + 1)
                        continue
                    yield k, _rgb(last[1], w, h, rot)
                    k += 1
                step = t - last[0] if last is not None and t > last[0] else step if last is not None else 0.0
                last = (t, f)
            # the stream ended: outputs until its end (last frame + its duration) take its last frame
            if last is not None:
                dur = float(last[1].duration * last[1].time_base) if last[1].duration else step
                end = last[0] + (dur or 1 / 30)
                while k / fps < end - 1e-9 and (k + 0.5) / fps - last[0] <= HOLD_S + 1e-9:
                    yield k, _rgb(last[1], w, h, rot)
                    k += 1
                if ends is not None:
                    ends["video"] = end
    except av.error.FFmpegError as e:
        if k == k0:
            raise MediaError(f"{path}: the video stream cannot be decoded ({type(e).__name__})") from None


def _rgb(frame, w, h, rot) -> np.ndarray:
    if rot in (90, 270):  # resize to the pre-rotation shape, then turn upright
        img = frame.to_ndarray(width=h, height=w, format="rgb24", interpolation="BICUBIC")
    else:
        img = frame.to_ndarray(width=w, height=h, format="rgb24", interpolation="BICUBIC")
    # display-matrix rotation is counter-clockwise
    return np.ascontiguousarray(np.rot90(img, k=rot // 90)) if rot else img
