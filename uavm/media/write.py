"""Writing a clip to a file: numpy frames and waveforms -> a real encoded file (PyAV)."""
from __future__ import annotations

from fractions import Fraction
from typing import Optional

import numpy as np


def write_media(path, frames: Optional[np.ndarray] = None, fps: float = 30.0,
                audio: Optional[np.ndarray] = None, sample_rate: int = 16000,
                video_codec: str = "libx264", audio_codec: str = "aac", pix_fmt: str = "yuv420p",
                audio_layout: str = "mono", options: Optional[dict] = None) -> str:
    """Encode (N, H, W, 3) uint8 ``frames`` and/or a float waveform in [-1, 1]
    (``(samples,)`` or ``(channels, samples)``) into ``path``; the container follows
    the file extension."""
    import av

    if frames is None and audio is None:
        raise ValueError("nothing to write")
    with av.open(str(path), "w") as c:
        vs = as_ = None
        if frames is not None:
            vs = c.add_stream(video_codec, rate=Fraction(fps).limit_denominator(1001))
            vs.height, vs.width = frames.shape[1:3]
            vs.pix_fmt = pix_fmt
            if options:
                vs.options = options
        if audio is not None:
            as_ = c.add_stream(audio_codec, rate=sample_rate, layout=audio_layout)
        if vs is not None:
            for f in frames:
                for pkt in vs.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")):
                    c.mux(pkt)
            for pkt in vs.encode():
                c.mux(pkt)
        if as_ is not None:
            wav = np.atleast_2d(np.asarray(audio, np.float32))
            fmt = "fltp"
            hop = 1024
            for i in range(0, wav.shape[1], hop):
                chunk = np.ascontiguousarray(wav[:, i:i + hop])
                af = av.AudioFrame.from_ndarray(chunk, format=fmt, layout=audio_layout)
                af.sample_rate = sample_rate
                af.pts = i
                for pkt in as_.encode(af):
                    c.mux(pkt)
            for pkt in as_.encode():
                c.mux(pkt)
    return str(path)
