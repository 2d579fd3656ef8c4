"""Media file -> mono waveform and 3 fps frames for one analysis window, or for the whole
clip as a stream of chunks (``decode_stream``: a timeline), in an isolated decoder.

``gate``: what is and is not media, a file's facts and the limits they are held to;
``audio``: the waveform (PyAV, libswresample); ``video``: the frames, as ffmpeg's ``fps``
filter picks them (decord, PyAV where it cannot); ``window`` and ``stream``: one window or
the whole clip, in this process; ``isolate``: the same in a decoder child process;
``write``: a clip written to a file.
"""
from .audio import GAP_S, load_audio, window_of
from .gate import (
    DEMUXERS,
    FFMPEG_OPTIONS,
    Limits,
    MediaError,
    MediaInfo,
    check,
    checked_probe,
    not_media,
    probe,
    regular_file,
    scaled_size,
)
from .isolate import decode_stream, decode_window, probe_isolated
from .stream import Chunk, stream_clip
from .video import DECORD_CANNOT, HOLD_S, load_frames, plausible_times, sample_grid, sample_times
from .video import _grid_frames as _grid_frames
from .window import Window, read_window
from .write import write_media

__all__ = ["DECORD_CANNOT", "DEMUXERS", "FFMPEG_OPTIONS", "GAP_S", "HOLD_S", "Chunk", "Limits", "MediaError",
           "MediaInfo", "Window", "check", "checked_probe", "decode_stream", "decode_window", "load_audio",
           "load_frames", "not_media", "plausible_times", "probe", "probe_isolated", "read_window",
           "regular_file", "sample_grid", "sample_times", "scaled_size", "stream_clip", "window_of",
           "write_media"]
