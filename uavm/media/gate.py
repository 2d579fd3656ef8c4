"""The door a file comes through before anything decodes it: what is and is not media,
what FFmpeg may read, the file's facts (``probe``) and the limits they are held to.
"""
from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from ..errors import UAVMError
from ..settings import Settings, settings


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


def open_media(path):
    """The file opened with PyAV behind the gate: a regular file, no reference file, only the
    file protocol and the DEMUXERS; else a one-line MediaError that says what the file is."""
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
    with open_media(path) as c:
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


def scaled_size(width: int, height: int, short_side: int) -> tuple[int, int]:
    """Shorter side to ``short_side``, aspect kept, the longer side truncated (no crop)."""
    if width <= height:
        return short_side, int(height * short_side / width)
    return int(width * short_side / height), short_side


# -- untrusted files: limits --------------------------------------------------------------
_DEFAULT = Settings()  # the settings' defaults (not the environment's values): each limit's one source


@dataclass
class Limits:
    """What a file may ask of us. Only the analysed window is ever decoded. ``Limits()``
    holds the defaults of ``uavm.settings``; ``Limits.from_env()`` what the environment says."""

    max_bytes: int = int(_DEFAULT.max_file_mb * 2**20)  # 4 GiB
    max_width: int = _DEFAULT.max_side  # 8K (7680 x 4320) passes, anything larger is refused
    max_height: int = _DEFAULT.max_side
    max_streams: int = 32
    timeout_s: float = _DEFAULT.decode_timeout  # one window's decode; a stream: each chunk, and this per window of media
    memory_mb: int = _DEFAULT.decode_memory_mb  # address-space cap of the decoding process
    isolate: bool = _DEFAULT.decode_isolate  # decode in a child process
    max_seconds: float = _DEFAULT.max_duration  # the longest clip decoded whole, as a stream (a timeline)
    max_aspect: float = _DEFAULT.max_aspect  # a frame's long side over its short one: the model's frames grow with it

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


def checked_probe(path, limits: Optional[Limits] = None) -> MediaInfo:
    """``probe`` and the limits (in this process; by default those of the environment)."""
    info = probe(path)
    check(info, Limits.from_env() if limits is None else limits)
    return info
