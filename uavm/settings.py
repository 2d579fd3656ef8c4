"""Every environment variable uavm reads, in one place, read when asked (never at import).

``settings()`` -> a Settings; a value that cannot be used is a one-line error naming
the variable. `uavm --help` lists them (from the fields' metadata), docs/serving.md too.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Optional

from .errors import UAVMError, number


class SettingsError(UAVMError):
    pass


def _var(env: str, default, help: str, lo=None, hi=None):
    return field(default=default, metadata={"env": env, "help": help, "lo": lo, "hi": hi})


@dataclass(frozen=True)
class Settings:
    bundle: Optional[str] = _var("UAVM_BUNDLE", None, "the default model bundle (else the embedded demo)")
    cache: Optional[str] = _var("UAVM_CACHE", None, "downloads and converted models (default ~/.cache/uavm)")
    mirror: Optional[str] = _var("UAVM_MIRROR", None, "where named models' files are fetched from instead of the "
                                 "release: http(s)://BASE/, file:///DIR or a folder")
    max_file_mb: float = _var("UAVM_MAX_FILE_MB", 4096.0, "largest media file decoded, MiB", 0.001, 1e7)
    max_side: int = _var("UAVM_MAX_SIDE", 8192, "largest frame side decoded, pixels", 16, 65536)
    max_aspect: float = _var("UAVM_MAX_ASPECT", 4.0, "longest frame decoded, long side over short side", 1, 64)
    decode_timeout: float = _var("UAVM_DECODE_TIMEOUT", 120.0, "seconds for one window's decode", 0.001, 86400)
    max_duration: float = _var("UAVM_MAX_DURATION", 14400.0, "longest clip decoded whole (a timeline), seconds",
                               1, 1e7)
    decode_memory_mb: int = _var("UAVM_DECODE_MEMORY_MB", 6144, "address-space cap of a decoder, MiB", 64, 1 << 24)
    decode_isolate: bool = _var("UAVM_DECODE_ISOLATE", True, "decode in a separate process (0: in this one)")
    decode_debug: bool = _var("UAVM_DECODE_DEBUG", False, "decoders print their mapped memory")
    decode_slots: int = _var("UAVM_DECODE_SLOTS", 2, "window decodes at once in the app", 1, 256)
    long_slots: int = _var("UAVM_LONG_SLOTS", 1, "timelines decoding at once in the app (a lane of their own)", 1, 64)
    cache_mb: float = _var("UAVM_CACHE_MB", 1024.0, "memory the app's caches may hold, all models together, MiB",
                           16, 1e7)
    upload_cache_mb: float = _var("UAVM_UPLOAD_CACHE_MB", 2048.0, "uploads the app keeps on disk, all together, "
                                  "MiB (a new upload past it is refused)", 1, 1e7)
    upload_mb: float = _var("UAVM_UPLOAD_MB", 200.0, "one upload request, every file of it, MiB", 0.01, 1e6)
    upload_keep: float = _var("UAVM_UPLOAD_KEEP", 3600.0, "seconds an upload is kept after its last use", 60, 1e7)
    session_idle: float = _var("UAVM_SESSION_IDLE", 3600.0, "seconds a page's session is kept after its last "
                               "request (an API-only session: 30)", 30, 1e7)
    session_events: int = _var("UAVM_SESSION_EVENTS", 16, "requests one session may have waiting or running", 1,
                               10_000)
    client_events: int = _var("UAVM_CLIENT_EVENTS", 128, "requests one client address may have waiting or running",
                              1, 100_000)
    live_sessions: int = _var("UAVM_LIVE_SESSIONS", 4, "pages streaming a camera and a microphone at once (the "
                              "Live tab)", 0, 10_000)
    live_minutes: float = _var("UAVM_LIVE_MINUTES", 30.0, "minutes one live session lasts", 0.1, 1e6)
    app_max_windows: int = _var("UAVM_APP_MAX_WINDOWS", 3000, "windows of one timeline the app computes", 1, 50_000)
    login_hours: float = _var("UAVM_LOGIN_HOURS", 12.0, "hours a login lasts", 0.01, 8760)
    login_failures: int = _var("UAVM_LOGIN_FAILURES", 10, "failed logins per client address per minute "
                               "(ten times that from everyone)", 1, 100_000)
    auth: Optional[str] = _var("UAVM_AUTH", None, "USER:PASS logins the app requires (comma-separated)")
    dist_timeout: float = _var("UAVM_DIST_TIMEOUT", 6 * 3600.0, "seconds a torchrun rank waits at a barrier",
                               1, 30 * 86400)

    @property
    def cache_dir(self) -> Path:
        return Path(self.cache) if self.cache else Path.home() / ".cache" / "uavm"




def settings(env=None) -> Settings:
    env = os.environ if env is None else env
    values = {}
    for f in fields(Settings):
        name, raw = f.metadata["env"], env.get(f.metadata["env"])
        if raw is None or raw == "":
            continue
        if isinstance(f.default, bool):
            if raw not in ("0", "1"):
                raise SettingsError(f"{name} must be 0 or 1, got {raw!r}")
            values[f.name] = raw == "1"
        elif isinstance(f.default, (int, float)):
            try:
                x = float(raw)
            except ValueError:
                raise SettingsError(f"{name} must be a number, got {raw!r}") from None
            values[f.name] = number(name, x, f.metadata["lo"], f.metadata["hi"], isinstance(f.default, int),
                                    error=SettingsError)
        else:
            values[f.name] = raw
    return Settings(**values)
