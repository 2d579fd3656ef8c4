"""Every environment variable uavm reads, in one place, read when asked (never at import).

``settings()`` -> a Settings; a value that cannot be used is a one-line error naming
the variable. ``VARIABLES`` lists them for the docs and ``uavm --help``.
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
    decode_timeout: float = _var("UAVM_DECODE_TIMEOUT", 120.0, "seconds for one window's decode", 0.001, 86400)
    max_duration: float = _var("UAVM_MAX_DURATION", 14400.0, "longest clip decoded whole (a timeline), seconds",
                               1, 1e7)
    decode_memory_mb: int = _var("UAVM_DECODE_MEMORY_MB", 6144, "address-space cap of a decoder, MiB", 64, 1 << 24)
    decode_isolate: bool = _var("UAVM_DECODE_ISOLATE", True, "decode in a separate process (0: in this one)")
    decode_debug: bool = _var("UAVM_DECODE_DEBUG", False, "decoders print their mapped memory")
    decode_slots: int = _var("UAVM_DECODE_SLOTS", 2, "decodes at once in the app", 1, 256)
    upload_cache_mb: float = _var("UAVM_UPLOAD_CACHE_MB", 2048.0, "uploads the app keeps on disk, MiB", 1, 1e7)
    auth: Optional[str] = _var("UAVM_AUTH", None, "USER:PASS logins the app requires (comma-separated)")
    dist_timeout: float = _var("UAVM_DIST_TIMEOUT", 6 * 3600.0, "seconds a torchrun rank waits at a barrier",
                               1, 30 * 86400)

    @property
    def cache_dir(self) -> Path:
        return Path(self.cache) if self.cache else Path.home() / ".cache" / "uavm"


VARIABLES = {f.metadata["env"]: f.metadata["help"] for f in fields(Settings)}


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
