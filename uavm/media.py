"""Media file -> mono waveform and 3 fps frames for one analysis window, or for the whole
clip as a stream of chunks (``decode_stream``: a timeline), in an isolated decoder.

Audio is decoded and resampled with PyAV (libswresample, as ffmpeg's ``-ar 16000
-ac 1`` does). Video frames are decoded with decord, whose resize is FFmpeg's
bicubic scaler, the one the released video features were made with; frames are
picked as ffmpeg's ``fps`` filter picks them (see ``sample_times``).
"""
from __future__ import annotations

import itertools
import math
import os
import stat
import sys
import time
import types
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from . import work
from .errors import UAVMError
from .files import memory_mb
from .settings import settings


class MediaError(UAVMError):
    """The file cannot be used; the message says why, in one line."""


# FFmpeg reads the one file it is given and nothing else: only the file protocol (no
# network, pipes or devices), and only demuxers of self-contained media containers. Left
# out on purpose: playlists and manifests (hls, dash), concat lists, image sequences
# (image2 patterns), imf, sdp/rtp and the like, which open further files or addresses
# named inside the file.
DEMUXERS = ("mov", "matroska", "avi", "wav", "w64", "mp3", "flac", "ogg", "aac", "mpegts", "mpeg", "flv",
            "asf", "aiff", "caf", "amr", "ac3", "eac3", "ivf", "obu", "h264", "hevc", "m4v", "mpegvideo",
            "wv", "ape", "dts", "truehd", "nut")
FFMPEG_OPTIONS = {"protocol_whitelist": "file", "format_whitelist": ",".join(DEMUXERS)}
# what such references look like at the top of a file (decord's FFmpeg takes no whitelist,
# so it only ever sees a file that passed PyAV's gate, and never one that starts like this)
_REFERENCE_MAGIC = (b"#EXTM3U", b"ffconcat", b"<?xml", b"<MPD", b"[playlist]", b"v=0")

_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def regular_file(path) -> Path:
    """``path`` if it names a non-empty regular file; else a one-line MediaError saying what
    it is. Checked before anything opens, hashes or decodes it (a FIFO or a device would
    block or never end)."""
    if not isinstance(path, (str, os.PathLike)) or not str(path) or "\0" in str(path):
        raise MediaError(f"a media file is named by a path, got {type(path).__name__}")
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise MediaError(f"{path}: no such file") from None
    except OSError as e:
        raise MediaError(f"{path}: cannot be read ({e.strerror or type(e).__name__})") from None
    if not stat.S_ISREG(st.st_mode):
        kind = next((k for test, k in _KINDS if test(st.st_mode)), "not a file")
        raise MediaError(f"{path}: not a regular file ({kind})")
    if st.st_size == 0:
        raise MediaError(f"{path}: the file is empty")
    return Path(path)


@dataclass
class MediaInfo:
    path: str
    duration: Optional[float]  # seconds, None when the container does not say
    has_audio: bool
    has_video: bool
    width: int = 0
    height: int = 0
    rotation: int = 0  # degrees, counter-clockwise, from the display matrix
    codec: str = ""
    streams: int = 0
    size_bytes: int = 0
    container: str = ""  # the demuxer FFmpeg chose (one of DEMUXERS)


# what a file that is not media usually is, from its first bytes: said in the refusal
_NOT_MEDIA = ((b"\xff\xd8\xff", "a JPEG image"), (b"\x89PNG", "a PNG image"), (b"GIF8", "a GIF image"),
              (b"BM", "a BMP image"), (b"II*\x00", "a TIFF image"), (b"MM\x00*", "a TIFF image"),
              (b"%PDF", "a PDF document"), (b"PK\x03\x04", "a ZIP archive (a .docx, .apk, ... or a .zip)"),
              (b"\x1f\x8b", "a gzip archive"), (b"7z\xbc\xaf", "a 7-Zip archive"), (b"Rar!", "a RAR archive"),
              (b"\x7fELF", "a program"), (b"{", "text (JSON?)"), (b"<", "text (HTML or XML?)"))


def not_media(head: bytes) -> str:
    """What the first bytes of a file that FFmpeg refused say it is, in words ("" if unknown)."""
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "a WebP image"
    if head[4:8] == b"ftyp" and head[8:12] in (b"heic", b"heix", b"mif1", b"avif", b"msf1"):
        return "a HEIF/AVIF image"
    for magic, what in _NOT_MEDIA:
        if head.startswith(magic):
            return what
    if head and all(32 <= b < 127 or b in (9, 10, 13) for b in head):
        return "a text file"
    return ""


def _open(path):
    import av

    p = regular_file(path)
    with open(p, "rb") as f:
        head = f.read(64).lstrip(b"\xef\xbb\xbf \t\r\n")  # a BOM or blank lines first
    if head.startswith(_REFERENCE_MAGIC):
        raise MediaError(f"{path}: a playlist or reference file, not a media file (only self-contained "
                         "audio and video files are read)")
    try:
        # an absolute path: a name like "http:x" or "pipe:0" is a file here, never a protocol
        return av.open(os.path.abspath(p), options=dict(FFMPEG_OPTIONS))
    except Exception as e:  # PyAV raises many kinds: all mean "not a media file we can read"
        what = not_media(head)
        if what:
            why = f"it is {what}" + ("; a still image is not a clip: give a video or a sound file"
                                     if what.endswith("image") else "")
        elif type(e).__name__ == "ArgumentError":  # FFmpeg knows the format, the whitelist refuses it
            why = "its format is not one of the self-contained audio and video containers read here"
        else:
            why = "FFmpeg does not recognise it as audio or video (damaged, or another kind of file)"
        raise MediaError(f"{path}: not a readable audio or video file: {why}") from None


def probe(path) -> MediaInfo:
    with _open(path) as c:
        v = c.streams.video[0] if c.streams.video else None
        dur = None
        if c.duration is not None:
            dur = c.duration / 1_000_000
        elif v is not None and v.duration is not None and v.time_base is not None:
            dur = float(v.duration * v.time_base)
        rot = 0
        if v is not None:
            try:
                for f in c.decode(v):  # the first frame carries the display matrix
                    rot = int(round(f.rotation or 0)) % 360
                    break
            except Exception:
                pass
        return MediaInfo(str(path), dur, bool(c.streams.audio), v is not None,
                         v.codec_context.width if v is not None else 0,
                         v.codec_context.height if v is not None else 0,
                         rot, v.codec_context.name if v is not None else "", len(c.streams),
                         Path(path).stat().st_size, c.format.name)


def load_audio(path, sample_rate: int = 16000, start: float = 0.0, seconds: float = 10.0) -> Optional[np.ndarray]:
    """Mono float32 waveform of [start, start + seconds), or None if the file has no audio.

    Time is counted from the audio stream's first sample, as for a wav that ffmpeg
    extracted from the file; ``window_of`` says what a gap in the stream gives.
    """
    with _open(path) as c:
        if not c.streams.audio:
            return None
    first, want = int(round(start * sample_rate)), int(round(seconds * sample_rate))
    with closing(_audio_segments(path, sample_rate, start)) as pieces:
        return window_of(pieces, first, want)


GAP_S = 0.1  # a forward jump this long in an audio stream's timestamps is a gap (jitter is far below it)


def window_of(pieces, first: int, want: int) -> np.ndarray:
    """Samples [first, first + want) of a stream given as (position, samples) pieces in order:
    zeros where the stream has a gap, cut after its last sample there, empty when it has no
    sample in the window. Reads no further than the window."""
    parts, end = [], first
    for pos, a in pieces:
        lo, hi = max(pos, first), min(pos + len(a), first + want)
        if hi > lo:
            parts.append((lo - first, a[lo - pos: hi - pos]))
            end = max(end, hi)
        if pos + len(a) >= first + want:
            break
    wav = np.zeros(end - first, np.float32)
    for at, a in parts:
        wav[at: at + len(a)] = a
    return wav


def _audio_segments(path, sample_rate: int, start: float = 0.0):
    """The audio stream as (position, samples) pieces: mono float32 at ``sample_rate``,
    positions in samples from the stream's first sample, ascending.

    Samples are counted as they decode. Where the timestamps jump ahead by more than GAP_S
    the stream has a gap: no samples there, and counting resumes at the timestamp. With
    ``start`` > 1 s it seeks to a little before ``start`` and places the first frame by its
    timestamp, on the grid of a decode from the beginning: input samples are dropped until
    one falls on a whole output sample, so the resampler's phase is the same. Exact where
    timestamps count samples (MP4, MP3, WAV, Ogg); within their rounding where they do not
    (Matroska and WebM: 1 ms).
    """
    import av

    seek = start > 1.0
    while True:
        with _open(path) as c:
            s = c.streams.audio[0]
            tb = s.time_base
            base = float(s.start_time * tb) if s.start_time is not None and tb is not None else 0.0
            if seek and tb is not None:
                c.seek(int((start - 1.0) / tb) + (s.start_time or 0), stream=s, backward=True)
            resampler, key = None, None
            nxt = None  # seconds from the stream's start where the next input sample belongs
            out = trim = 0  # where the next output sample goes; input samples still to drop
            sent = False
            try:
                for frame in c.decode(s):
                    t = None if frame.time is None else frame.time - base
                    rate = frame.sample_rate
                    if nxt is None and seek and t is None:
                        break  # a frame that cannot be placed: decode from the beginning instead
                    place = (nxt is None and seek) or (nxt is not None and t is not None and t - nxt > GAP_S)
                    if place or (frame.format.name, frame.layout.name, rate) != key:
                        for a in _drain(resampler):
                            yield out, a
                            out += len(a)
                        resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
                        key = (frame.format.name, frame.layout.name, rate)
                    if place:
                        at = int(round(t * rate))  # input samples from the stream's start
                        step = rate // math.gcd(rate, sample_rate)
                        aligned = max(-(-at // step) * step, 0)
                        trim, out = aligned - at, max(out, aligned * sample_rate // rate)
                        nxt = t
                    elif nxt is None:
                        nxt = t or 0.0
                    nxt += frame.samples / rate
                    if trim >= frame.samples:
                        trim -= frame.samples
                        continue
                    if trim:
                        frame, trim = _drop(frame, trim), 0
                    for o in resampler.resample(frame):
                        a = o.to_ndarray().reshape(-1)
                        yield out, a
                        out += len(a)
                        sent = True
                else:
                    for a in _drain(resampler):
                        yield out, a
                        out += len(a)
                    return
            except av.error.FFmpegError as e:
                if not sent:
                    raise MediaError(f"{path}: the audio stream cannot be decoded ({e.__class__.__name__})") from None
                return  # a damaged tail: keep what decoded, as ffmpeg would
        seek = False


def _drain(resampler) -> list:
    """What a resampler still holds (its filter's delay), as arrays."""
    return [] if resampler is None else [o.to_ndarray().reshape(-1) for o in resampler.resample(None)]


def _drop(frame, n: int):
    """The frame without its first ``n`` samples."""
    import av

    a = frame.to_ndarray()
    a = a[:, n:] if frame.format.is_planar else a[:, n * len(frame.layout.channels):]
    f = av.AudioFrame.from_ndarray(np.ascontiguousarray(a), format=frame.format.name, layout=frame.layout.name)
    f.sample_rate = frame.sample_rate
    return f


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


def scaled_size(width: int, height: int, short_side: int) -> tuple[int, int]:
    """Shorter side to ``short_side``, aspect kept, the longer side truncated (no crop)."""
    if width <= height:
        return short_side, int(height * short_side / width)
    return int(width * short_side / height), short_side


def load_frames(path, fps: float = 3.0, short_side: int = 224, start: float = 0.0,
                seconds: float = 10.0) -> Optional[np.ndarray]:
    """(K, H, W, 3) uint8 RGB frames sampled at ``fps`` over the window, or None if no video.

    decord first (its resize is the one the released features were made with); PyAV for
    what decord cannot read or shows wrongly (AV1, rotated phone videos, broken indexes)."""
    info = probe(path)
    if not info.has_video:
        return None
    if info.width <= 0 or info.height <= 0:
        raise MediaError(f"{path}: the video stream has no frame size")
    if info.rotation % 360 == 0 and info.codec not in DECORD_CANNOT:
        try:
            return _frames_decord(path, info, fps, short_side, start, seconds)
        except MediaError:
            pass
    return _frames_pyav(path, info, fps, short_side, start, seconds)


DECORD_CANNOT = {"av1", "libdav1d", "libaom-av1"}


def _frames_pyav(path, info, fps, short_side, start, seconds) -> np.ndarray:
    """The window's outputs of ``_pyav_grid``."""
    k0, n = int(round(start * fps)), int(math.ceil(seconds * fps - 1e-9))
    with closing(_pyav_grid(path, info, fps, short_side, k0)) as grid:
        out = [img for _, img in itertools.islice(grid, n)]
    w, h = _display_size(info, short_side)
    return np.stack(out) if out else np.zeros((0, h, w, 3), np.uint8)


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
        with _open(path) as c:
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


def _decord(path):
    """decord, or MediaError when it is not installed (a Python without its wheels): PyAV
    decodes then, whose resize differs slightly from the released features' (decord's)."""
    try:
        import decord
    except ImportError:
        raise MediaError(f"{path}: decord is not installed") from None
    return decord


def _frames_decord(path, info, fps, short_side, start, seconds) -> np.ndarray:
    decord = _decord(path)

    w, h = scaled_size(info.width, info.height, short_side)
    if info.container.split(",")[0] not in DEMUXERS:  # decord's FFmpeg has no whitelist: PyAV's gate first
        raise MediaError(f"{path}: container {info.container!r} is not read")
    try:
        vr = decord.VideoReader(os.path.abspath(path), ctx=decord.cpu(0), width=w, height=h, num_threads=1)
        n = len(vr)
        if n == 0:
            return np.zeros((0, h, w, 3), np.uint8)
        ts = vr.get_frame_timestamp(np.arange(n))
        if not plausible_times(ts):
            raise MediaError(f"{path}: decord's frame times are not plausible")  # PyAV decodes it
        t0 = ts[0, 0]
        idx = sample_times(ts[:, 0] - t0, ts[-1, 1] - t0, fps, start, seconds)
        if len(idx) == 0:
            return np.zeros((0, h, w, 3), np.uint8)
        frames = vr.get_batch(list(idx)).asnumpy()
    except Exception as e:  # decord raises its own and generic errors; PyAV gets a second try
        raise MediaError(f"{path}: the video stream cannot be decoded ({str(e).splitlines()[0][:120]})") from None
    return frames


def _grid_frames(path, info, fps, short_side, ends: dict, batch: int = 15):
    """Yield (k, frame) for every output of the fps filter over the whole video stream, k = 0,
    1, ...: each the very frame ``load_frames`` gives for any window that holds output k (the
    outputs depend on the stream's timestamps only, never on the window). decord as there;
    PyAV for what decord cannot read or shows wrongly, from the output where decord stopped.
    ``ends["video"]``: where the stream ends, once it has."""
    if info.width <= 0 or info.height <= 0:
        raise MediaError(f"{path}: the video stream has no frame size")
    nxt = 0
    if info.rotation % 360 == 0 and info.codec not in DECORD_CANNOT:
        try:
            for k, img in _decord_grid(path, info, fps, short_side, ends, batch):
                yield k, img
                nxt = k + 1
            return
        except MediaError:
            pass  # PyAV from output nxt on
    yield from _pyav_grid(path, info, fps, short_side, nxt, ends)


def _decord_grid(path, info, fps, short_side, ends: dict, batch: int):
    decord = _decord(path)

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
        ends["video"] = 0.0
        return
    if not plausible_times(ts):
        raise MediaError(f"{path}: decord's frame times are not plausible")  # PyAV decodes it
    starts, end = ts[:, 0] - ts[0, 0], float(ts[-1, 1] - ts[0, 0])
    ks, idx = sample_grid(starts, end, fps, 0.0, end + 1.0)  # every output, gaps left out
    for at in range(0, len(ks), batch):  # `batch` outputs at a time: each frame decoded once
        try:
            uniq, where = np.unique(idx[at:at + batch], return_inverse=True)
            frames = vr.get_batch(list(uniq)).asnumpy()
        except Exception as e:
            raise failed(e) from None
        for k, i in zip(ks[at:at + batch], where.reshape(-1)):
            yield int(k), frames[i]
    ends["video"] = end


# -- untrusted files: limits, and decoding where a crash cannot take the caller down --------
@dataclass
class Limits:
    """What a file may ask of us. Only the analysed window is ever decoded."""

    max_bytes: int = 4 << 30  # 4 GiB
    max_width: int = 8192  # 8K (7680 x 4320) passes, anything larger is refused
    max_height: int = 8192
    max_streams: int = 32
    timeout_s: float = 120.0  # one window's decode; a stream: each chunk, and this per window of media
    memory_mb: int = 6144  # address-space cap of the decoding process
    isolate: bool = True  # decode in a child process
    max_seconds: float = 14400.0  # the longest clip decoded whole, as a stream (a timeline)
    max_aspect: float = 4.0  # a frame's long side over its short one: the model's frames grow with it

    @classmethod
    def from_env(cls) -> Limits:
        """From the settings (UAVM_MAX_FILE_MB, UAVM_MAX_SIDE, UAVM_DECODE_TIMEOUT,
        UAVM_DECODE_MEMORY_MB, UAVM_DECODE_ISOLATE, UAVM_MAX_DURATION, UAVM_MAX_ASPECT; see
        ``uavm.settings``)."""
        s = settings()
        return cls(max_bytes=int(s.max_file_mb * 2**20), max_width=s.max_side, max_height=s.max_side,
                   timeout_s=s.decode_timeout, memory_mb=s.decode_memory_mb, isolate=s.decode_isolate,
                   max_seconds=s.max_duration, max_aspect=s.max_aspect)


def check(info: MediaInfo, limits: Limits, short_side: Optional[int] = None) -> None:
    """The file's facts against the limits, before anything is decoded; with ``short_side``
    (the model's frames), also the size of the frames the model would see."""
    if info.size_bytes > limits.max_bytes:
        raise MediaError(f"{info.path}: the file is {info.size_bytes / 2**20:.0f} MiB, over the "
                         f"{limits.max_bytes / 2**20:.0f} MiB limit")
    if info.streams > limits.max_streams:
        raise MediaError(f"{info.path}: {info.streams} streams, over the limit of {limits.max_streams}")
    if info.has_video and (info.width > limits.max_width or info.height > limits.max_height):
        raise MediaError(f"{info.path}: the video is {info.width}x{info.height}, over the "
                         f"{limits.max_width}x{limits.max_height} limit")
    if info.has_video and short_side and info.width > 0 and info.height > 0:
        long, short = max(info.width, info.height), min(info.width, info.height)
        if long / short > limits.max_aspect:
            w, h = scaled_size(info.width, info.height, short_side)
            raise MediaError(f"{info.path}: the video is {info.width}x{info.height}, a {long / short:.0f}:1 frame; "
                             f"frames longer than {limits.max_aspect:g}:1 are refused (the model would see "
                             f"{w}x{h}-pixel frames)")


@dataclass
class Window:
    info: MediaInfo
    wav: Optional[np.ndarray]
    frames: Optional[np.ndarray]


def read_window(path, start: float, seconds: float, sample_rate: int, fps: float, short_side: int,
                audio: bool = True, video: bool = True, limits: Limits = Limits()) -> Window:
    """Probe, check the limits, and decode the window's audio and frames (in this process)."""
    info = probe(path)
    check(info, limits, short_side)
    if not (info.has_audio or info.has_video):
        raise MediaError(f"{path}: has neither an audio nor a video stream")
    wav = load_audio(path, sample_rate, start, seconds) if audio and info.has_audio else None
    frames = load_frames(path, fps, short_side, start, seconds) if video and info.has_video else None
    return Window(info, wav, frames)


@dataclass
class Chunk:
    """The next stretch of a clip decoded as a stream (``stream_clip``)."""

    until: float  # seconds: both streams are decoded up to here (no later piece starts before it)
    audio: list  # (position, samples) pieces of the waveform, as ``_audio_segments`` gives them
    ks: Optional[np.ndarray]  # the fps filter's output numbers of the frames, ascending (gaps left out)
    frames: Optional[np.ndarray]  # those outputs, (K, H, W, 3) uint8, or None
    last: bool = False
    ends: Optional[dict] = None  # on the last chunk: where each stream ended, in seconds
    decoder_mb: Optional[dict] = None  # on the last chunk: the decoding process's memory (VmHWM, ...)


def stream_clip(path, sample_rate: int, fps: float, short_side: int, chunk_seconds: float = 5.0,
                audio: bool = True, video: bool = True, limits: Limits = Limits()):
    """Probe, check the limits, and decode the whole clip once, in order: yields the MediaInfo,
    then a Chunk for every ``chunk_seconds`` of media that holds something, the last one marked.
    The frames are exactly those ``read_window`` gives for any window that holds them, and so
    are the samples where timestamps count samples (see ``_audio_segments``). One chunk is
    held at a time, however long the clip: the child waits until the parent takes it. How long
    the clip is comes from what decodes, never from its header: a stretch where no stream has
    anything is skipped at once, and media past ``limits.max_seconds`` is refused."""
    info = probe(path)
    check(info, limits, short_side)
    if not (info.has_audio or info.has_video):
        raise MediaError(f"{path}: has neither an audio nor a video stream")
    too_long = f"{path}: holds media past {limits.max_seconds:g} s, the limit of a clip decoded whole"
    yield info
    ends: dict = {}
    streams = {}
    if audio and info.has_audio:
        streams["audio"] = _audio_segments(path, sample_rate)
    if video and info.has_video:
        streams["video"] = _grid_frames(path, info, fps, short_side, ends)
    held: dict = {}  # the first item of the next chunk, per stream
    until, audio_end = 0.0, 0
    try:
        while streams:
            until += chunk_seconds
            if streams and all(m in held for m in streams):
                # every stream's next piece lies ahead: jump to the chunk that holds the first of them
                nxt = min(held["audio"][0] / sample_rate if "audio" in held else math.inf,
                          held["video"][0] / fps if "video" in held else math.inf)
                until = max(until, chunk_seconds * (math.floor(nxt / chunk_seconds) + 1))
            if until - chunk_seconds > limits.max_seconds:
                raise MediaError(too_long)
            got = {"audio": [], "video": []}
            for m, limit in (("audio", until * sample_rate), ("video", until * fps - 1e-9)):
                while m in streams:
                    item = held.pop(m, None) or next(streams[m], None)
                    if item is None:
                        streams.pop(m).close()
                    elif item[0] >= limit:
                        held[m] = item
                    else:
                        got[m].append(item)
                        continue
                    break
            if got["audio"]:
                audio_end = got["audio"][-1][0] + len(got["audio"][-1][1])
            last = not streams
            if not (got["audio"] or got["video"] or last):
                continue  # a gap in every stream: nothing to send
            frames = np.stack([f for _, f in got["video"]]) if got["video"] else None
            ks = np.array([k for k, _ in got["video"]], np.int64) if got["video"] else None
            chunk = Chunk(until, got["audio"], ks, frames, last)
            if last:
                chunk.ends = {"audio": audio_end / sample_rate if audio and info.has_audio else None,
                              "video": ends.get("video", 0.0) if video and info.has_video else None}
                chunk.decoder_mb = memory_mb()
            yield chunk
    finally:
        for s in streams.values():
            s.close()


def checked_probe(path, limits: Limits = None) -> MediaInfo:
    """``probe`` and the limits (in this process)."""
    info = probe(path)
    check(info, limits or Limits())
    return info


def _child(conn, fn, args, kwargs, memory_mb):
    try:
        import resource

        mapped = memory_mb_now()
        cap = max(memory_mb << 20, int(mapped * 2**20) + (256 << 20))  # never below what is mapped + 256 MiB
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    except (ImportError, ValueError, OSError):
        pass
    if settings().decode_debug:
        print(f"decoder {os.getpid()}: {memory_mb_now():.0f} MiB mapped before the cap", file=sys.stderr)
    try:
        result = _JOBS[fn](*args, **kwargs)
        if isinstance(result, types.GeneratorType):  # a stream: each item as it comes (send waits for
            for item in result:                        # the parent to take it), then the end
                conn.send(("item", item))
            result = None
        conn.send(("ok", result))
    except MediaError as e:
        conn.send(("media", str(e)))
    except MemoryError:
        conn.send(("media", f"{args[0]}: decoding needed more than {memory_mb} MiB"))
    except BaseException as e:  # anything else is still the file's problem, said in one line
        conn.send(("media", f"{args[0]}: cannot be decoded ({type(e).__name__}: {str(e).splitlines()[0][:120] if str(e) else ''})"))
    finally:
        conn.close()


def memory_mb_now() -> float:
    return memory_mb().get("VmSize", 0.0)


_JOBS = {"read_window": read_window, "probe": checked_probe, "stream_clip": stream_clip}
_CTX = None
_START = None  # a lock: starting a decoder briefly hides the parent's __main__ (see _start)


def _start(proc) -> None:
    """Start a decoder without the parent's ``__main__``. multiprocessing would re-run the
    parent's script in the child (a script without a ``__main__`` guard would run again,
    ``python - <<EOF`` would fail to find ``<stdin>``); the decoder needs nothing from it."""
    global _START
    import threading

    if _START is None:
        _START = threading.Lock()
    main = sys.modules.get("__main__")
    with _START:
        saved = {k: main.__dict__.pop(k) for k in ("__file__", "__spec__") if main is not None and k in main.__dict__}
        try:
            if main is not None and "__spec__" in saved:
                main.__spec__ = None
            proc.start()
        finally:
            if main is not None:
                main.__dict__.update(saved)


def _context():
    global _CTX
    if _CTX is None:
        import multiprocessing as mp

        # forkserver: a clean, small parent to fork decoders from (no threads, no model)
        _CTX = mp.get_context("forkserver")
        # the libraries are mapped before the child caps its address space
        _CTX.set_forkserver_preload(["uavm.media", "av", "decord"])
    return _CTX


def _spawn(fn: str, path, args: tuple, limits: Limits):
    """A child process running ``_JOBS[fn](path, *args, limits=limits)`` under the memory cap,
    and the end of the pipe its answers come through."""
    regular_file(path)  # cheap refusals need no process
    ctx = _context()
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, daemon=True,
                       args=(child, fn, (str(path), *args), {"limits": limits}, limits.memory_mb))
    _start(proc)
    child.close()
    return proc, parent


def _crashed(path, proc) -> MediaError:
    proc.join(5)
    code = proc.exitcode
    why = f"signal {-code}" if code is not None and code < 0 else f"exit code {code}"
    return MediaError(f"{path}: the decoder crashed on this file ({why})")


def _stop(proc, parent) -> None:
    if proc.is_alive():
        proc.kill()
    proc.join(5)
    parent.close()


def _isolated(fn: str, path, args: tuple, limits: Limits):
    """``_JOBS[fn](path, *args, limits=limits)`` in a child process with a time limit and a
    memory cap: a decoder that crashes, hangs or balloons on a hostile file costs that file only."""
    proc, parent = _spawn(fn, path, args, limits)
    try:
        if not work.wait(parent.poll, limits.timeout_s):  # (a client that leaves stops it: work.Cancelled)
            raise MediaError(f"{path}: decoding took longer than {limits.timeout_s:g} s and was stopped")
        kind, value = parent.recv()
    except EOFError:
        raise _crashed(path, proc) from None
    finally:
        _stop(proc, parent)
    if kind != "ok":
        raise MediaError(value)
    return value


def _isolated_stream(fn: str, path, args: tuple, limits: Limits, unit: float):
    """The items of the generator ``_JOBS[fn](path, *args, limits=limits)``, run in a child
    process under the memory cap, as they arrive. A stream cannot have one time limit, so it
    gets two: each item within ``limits.timeout_s`` (a stalled decoder), and all of them within
    ``limits.timeout_s`` per ``unit`` seconds of media delivered, plus one (a decoder too slow
    for the clip). Only the time spent waiting for the child counts: not the caller's work
    between items. Closing the generator stops the child."""
    proc, parent = _spawn(fn, path, args, limits)
    waited, media_s = 0.0, 0.0
    try:
        while True:
            left = limits.timeout_s * (1 + media_s / unit) - waited
            t = time.monotonic()
            if not work.wait(parent.poll, max(min(limits.timeout_s, left), 0)):
                if left < limits.timeout_s:  # the budget for the whole stream ran out first
                    raise MediaError(f"{path}: decoding was slower than {limits.timeout_s:g} s per {unit:g} s of "
                                     f"media ({waited + max(left, 0):.3g} s for {media_s:g} s) and was stopped")
                raise MediaError(f"{path}: the decoder sent nothing for {limits.timeout_s:g} s and was stopped")
            kind, value = parent.recv()
            waited += time.monotonic() - t
            if kind == "ok":
                return
            if kind != "item":
                raise MediaError(value)
            media_s = max(media_s, float(getattr(value, "until", 0.0)))
            yield value
    except EOFError:
        raise _crashed(path, proc) from None
    finally:
        _stop(proc, parent)


def decode_window(path, start: float, seconds: float, sample_rate: int, fps: float, short_side: int,
                  audio: bool = True, video: bool = True, limits: Limits = Limits()) -> Window:
    """``read_window`` in an isolated child process (see ``_isolated``)."""
    if not limits.isolate:
        return read_window(path, start, seconds, sample_rate, fps, short_side, audio, video, limits)
    return _isolated("read_window", path, (start, seconds, sample_rate, fps, short_side, audio, video), limits)


def decode_stream(path, sample_rate: int, fps: float, short_side: int, window: float = 10.0,
                  chunk_seconds: float = 5.0, audio: bool = True, video: bool = True, limits: Limits = Limits()):
    """``stream_clip`` in an isolated child process (see ``_isolated_stream``; ``window``, the
    model's window in seconds, is the unit of its time budget): the MediaInfo, then the Chunks
    as they decode. Close it (``contextlib.closing``) to stop the decoder early."""
    args = (sample_rate, fps, short_side, chunk_seconds, audio, video)
    if not limits.isolate:
        return stream_clip(path, *args, limits=limits)
    return _isolated_stream("stream_clip", path, args, limits, window)


def probe_isolated(path, limits: Limits = Limits()) -> MediaInfo:
    """``probe`` (and the limits) in an isolated child process: what a server asks of an
    upload before decoding it goes through the same door as the decoding."""
    if not limits.isolate:
        return checked_probe(path, limits)
    return _isolated("probe", path, (), limits)
