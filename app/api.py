"""The app's HTTP API (``gradio_client``): the answers of `uavm predict --json` and `uavm
timeline --json` for an uploaded clip. Failures are one-line errors, as an API's should be."""
from __future__ import annotations

from pathlib import Path

import gradio as gr

from uavm import work
from uavm.errors import InputError, UAVMError, flag, number

from .page import STRIDE
from .serving import Server, guarded, public_message


def functions(server: Server) -> dict:
    """api name -> the function serving it (its signature is the API's)."""
    first = server.names[0]

    @guarded
    def predict(media: gr.FileData, start: float = 0.0, audio_on: bool = True, video_on: bool = True,
                mute_from: float | None = None, mute_to: float | None = None,
                blank_from: float | None = None, blank_to: float | None = None,
                model: str = first, top_k: int = 5, include_attention: bool = False,
                audio_from: gr.FileData | None = None, audio_snr: float | None = None,
                video_blur: float | None = None, video_size: float | None = None, video_fps: float | None = None,
                audio_weight: float = 0.5, degrade_from: float | None = None, degrade_to: float | None = None,
                request: gr.Request = None) -> dict:
        """The answer of `uavm predict --json` for this clip and these settings (the attention
        maps, about 0.9 MB, only with include_attention=True): the audio from another clip,
        the degradations (over degrade_from..degrade_to only, when given) and the audio weight
        as `uavm predict`'s options; each pass's "ood": its familiarity (docs/missing.md)."""
        server.sessions.used(request)
        flag("include_attention", include_attention)
        spans = [_span(a, b) for a, b in ((mute_from, mute_to), (blank_from, blank_to))]
        degrade = {"audio_snr": audio_snr, "video_blur": video_blur, "video_size": video_size, "video_fps": video_fps,
                   "span": _span(degrade_from, degrade_to)}
        q = server.query(media, start, audio_on, video_on, *spans, model, top_k, api=True, audio_from=audio_from,
                         degrade=degrade, audio_weight=audio_weight)
        with server.serving(request):  # this client's lanes; its work stops if it leaves
            an, _ = server.analyze(q)
        if an.prediction is None:  # nothing left, or a model that needs both: the library's own words
            raise InputError(an.error)
        out = {"start": an.start, **an.prediction.to_dict(q.top_k, attention=include_attention)}
        if q.audio_from:  # the clients' own names, never the server's paths
            out["sources"] = {"audio": _name(audio_from, q.audio_from), "video": _name(media, q.path)}
        return out

    @guarded
    def timeline(media: gr.FileData, stride: float = STRIDE, window: float | None = None,
                 model: str = first, top_k: int = 3, request: gr.Request = None) -> dict:
        """The answer of `uavm timeline --json` for this clip: every window's audio-only,
        video-only and fused top-k, and where a modality is missing."""
        server.sessions.used(request)
        path = server.uploads.from_api(media)
        ex = server.models.get(model)
        stride = number("stride", stride, lo=1.0)  # at most one window per second of the clip
        try:
            with server.serving(request):  # this client's lanes; its work stops if it leaves
                tl = ex.timeline(path, digest=server.models.digest(path), stride=stride, window=window, top_k=top_k,
                                 max_windows=server.max_windows)
        except work.Cancelled:
            raise
        except UAVMError as e:
            raise InputError(public_message(e, path)) from None
        return {**tl.to_dict(), "clip": _name(media, path)}

    @guarded
    def sweep(media: gr.FileData, degradation: str = "audio_snr", levels: str = "", start: float = 0.0,
              audio_on: bool = True, video_on: bool = True, model: str = first, audio_from: gr.FileData | None = None,
              degrade_from: float | None = None, degrade_to: float | None = None, audio_weight: float = 0.5,
              target: str | None = None, request: gr.Request = None) -> dict:
        """The answer of `uavm sweep --json`: one degradation (audio_snr, video_blur, video_size,
        video_fps) over levels ("30, 20, 10"; empty: the page's usual ones) on this window."""
        from .tabs import sweep_levels

        server.sessions.used(request)
        q = server.query(media, start, audio_on, video_on, None, None, model, 1, api=True, audio_from=audio_from,
                         audio_weight=audio_weight)
        chosen = sweep_levels(degradation, levels)
        if target is not None and not isinstance(target, str):
            raise InputError("target must be a class name or a pass (audio, video, fused)")
        ex = server.models.get(q.model)
        try:
            with server.serving(request):
                sw = ex.sweep(q.path, degradation, chosen, q.start, q.audio, q.video, span=_span(degrade_from, degrade_to),
                              target=target, audio_weight=q.audio_weight, digest=server.models.digest(q.path),
                              audio_from=q.audio_from,
                              audio_digest=server.models.digest(q.audio_from) if q.audio_from else None)
        except work.Cancelled:
            raise
        except UAVMError as e:
            raise InputError(public_message(e, q.path, q.audio_from)) from None
        return {**sw.to_dict(), "clip": _name(media, q.path)}

    return {"predict": predict, "timeline": timeline, "sweep": sweep}


def _span(a, b):
    """Two optional times -> None (neither given) or the pair, checked where the query is."""
    return None if a is None and b is None else (a, b)


def _name(media, path) -> str:
    """A file's name as its client gave it (else the upload's own)."""
    return Path(str(getattr(media, "orig_name", "") or (media.get("orig_name") if isinstance(media, dict) else "")
                    or path)).name
