"""The generated corpus's sounds: each kind's recipe (its partials, envelope and beat), one
event alone, and a clip's soundtrack with its distractors and noise. Procedural numpy."""
from __future__ import annotations

import numpy as np

from .events import SECONDS, SR, Event


def _env(n, attack, release):
    """Linear attack and release ramps over n samples."""
    t = np.arange(n) / SR
    return np.clip(np.minimum(t / max(attack, 1e-4), (n / SR - t) / max(release, 1e-4)), 0, 1)


def _harmonic(f, t, amps):
    ph = 2 * np.pi * np.cumsum(np.broadcast_to(f, t.shape)) / SR
    return sum(a * np.sin((k + 1) * ph) for k, a in enumerate(amps))


def _note(f0, dur, amps, tau, rng, attack=0.004, detune=0.0):
    t = np.arange(int(dur * SR)) / SR
    amps = np.asarray(amps)
    out = np.zeros_like(t)
    for k, a in enumerate(amps):
        decay = np.exp(-t / (tau / (1 + 0.3 * k))) if tau else 1.0
        out += a * decay * np.sin(2 * np.pi * f0 * (k + 1) * t + rng.uniform(0, 2 * np.pi))
        if detune:
            out += 0.5 * a * decay * np.sin(2 * np.pi * f0 * (1 + detune) * (k + 1) * t)
    return out * _env(len(t), attack, 0.02)


def _noise(n, rng, cutoff_hz):
    """Low-passed white noise (first-order roll-off above cutoff_hz), peak 1."""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1 / SR)
    y = np.fft.irfft(spec / np.sqrt(1 + (f / cutoff_hz) ** 2), n)
    return y / (np.abs(y).max() + 1e-9)


KEY_NOTES = 220 * 2 ** (np.array([0, 2, 4, 7, 9, 12, 14, 16, 19, 21, 24]) / 12)  # pentatonic, 220-880 Hz


def sound(kind: str, ev: Event, rng) -> np.ndarray:
    n = int((ev.end - ev.start) * SR)
    t = np.arange(n) / SR
    out = np.zeros(n)
    rel = ev.onsets - ev.start
    if kind == "siren":
        f0, df, rate = rng.uniform(600, 800), rng.uniform(200, 350), rng.choice([rng.uniform(0.4, 0.9), rng.uniform(3, 4)])
        out = _harmonic(f0 + df * np.sin(2 * np.pi * rate * t), t, [1, 0.5, 0.33, 0.2]) * _env(n, 0.05, 0.1)
    elif kind == "ring":
        f0 = rng.uniform(900, 1400)
        step = rng.uniform(0.05, 0.09)
        for s in np.arange(0, ev.end - ev.start - 0.05, step):
            k = int(s * SR)
            m = min(int(0.4 * SR), n - k)
            tt = np.arange(m) / SR
            strike = sum(a * np.sin(2 * np.pi * f0 * r * tt) for a, r in ((1, 1), (0.5, 2.76), (0.25, 5.4)))
            out[k:k + m] += 0.4 * strike * np.exp(-tt / 0.08)
    elif kind == "bark":
        for s in rel:
            k = int(s * SR)
            d = rng.uniform(0.1, 0.18)
            m = min(int(d * SR), n - k)
            tt = np.arange(m) / SR
            f = rng.uniform(450, 700) * (1 - 0.3 * tt / d)
            burst = _harmonic(f, tt, [1, 0.7, 0.5, 0.3]) + 0.4 * rng.standard_normal(m)
            out[k:k + m] += burst * np.sin(np.pi * np.arange(m) / m) ** 0.5
    elif kind == "howl":
        f0 = rng.uniform(300, 380)
        shape = np.sin(np.pi * t / t[-1]) if n > 1 else t
        f = f0 * (1 + 0.6 * shape) * (1 + 0.015 * np.sin(2 * np.pi * 5 * t))
        out = _harmonic(f, t, [1, 0.35, 0.15]) * _env(n, 0.2, 0.3)
    elif kind == "growl":
        f0 = rng.uniform(80, 130)
        buzz = _harmonic(f0 * (1 + 0.05 * rng.standard_normal() + 0.03 * np.sin(2 * np.pi * 3 * t)), t, [1, 0.8, 0.6, 0.5, 0.4, 0.3])
        am = 0.6 + 0.4 * np.sin(2 * np.pi * rng.uniform(22, 34) * t)
        out = (buzz + 0.8 * _noise(n, rng, 300)) * am * _env(n, 0.1, 0.2) * 0.6
    else:  # keyboard instruments: a note at every onset, same melody model for all three
        for i, s in enumerate(rel):
            k = int(s * SR)
            nxt = rel[i + 1] if i + 1 < len(rel) else ev.end - ev.start
            f0 = rng.choice(KEY_NOTES)
            if kind == "piano":
                note = _note(f0, min(1.2, ev.end - ev.start - s), [1, 0.5, 0.3, 0.2, 0.12, 0.08], 0.45, rng)
            elif kind == "organ":
                d = max(nxt - s - 0.01, 0.05)
                note = _note(f0, d, [1, 0.8, 0.0, 0.6, 0.0, 0.4, 0, 0.3], 0, rng, attack=0.02)
                note *= 1 + 0.15 * np.sin(2 * np.pi * 6 * np.arange(len(note)) / SR)
            else:  # harpsichord
                note = _note(f0, min(0.8, ev.end - ev.start - s), 1 / np.arange(1, 16) ** 0.6, 0.16, rng,
                             attack=0.001, detune=0.003)
            m = min(len(note), n - k)
            out[k:k + m] += 0.5 * note[:m]
    return ev.gain * out / (np.abs(out).max() + 1e-9)


def solo(kind: str, seed: int = 0) -> np.ndarray:
    """One 2 s event of ``kind`` alone, from 0.5 s of a silent 10 s track: where its energy
    lies is what an explanation of which frequencies should find."""
    rng = np.random.default_rng(seed)
    onsets = 0.5 + np.cumsum(rng.uniform(0.6, 1.4, 64) / 4.0)
    ev = Event(0.5, 2.5, np.concatenate([[0.5], onsets[onsets < 2.4]]), 0.5, 0.5, 1.0, 1.0)
    wav = np.zeros(int(SECONDS * SR), np.float32)
    s = sound(kind, ev, rng)
    wav[int(0.5 * SR):int(0.5 * SR) + len(s)] = 0.8 * s
    return wav


def soundtrack(kind: str, events: list, rng) -> np.ndarray:
    n = int(SECONDS * SR)
    wav = np.zeros(n)
    for ev in events:
        s = sound(kind, ev, rng)
        k = int(ev.start * SR)
        wav[k:k + len(s)] += s[: n - k]
    # distractors: clicks, noise bursts, mains hum; and background noise
    for _ in range(int(rng.integers(0, 6))):
        k = int(rng.uniform(0, SECONDS - 0.6) * SR)
        m = int(rng.uniform(0.02, 0.5) * SR)
        wav[k:k + m] += 10 ** (rng.uniform(-30, -14) / 20) * _noise(m, rng, rng.uniform(200, 6000))
    if rng.random() < 0.4:
        tt = np.arange(n) / SR
        wav += 10 ** (rng.uniform(-36, -24) / 20) * _harmonic(np.full(n, rng.choice([50.0, 60.0])), tt, [1, 0.5, 0.3])
    wav += 10 ** (rng.uniform(-50, -26) / 20) * rng.standard_normal(n)
    return (0.8 * wav / max(np.abs(wav).max(), 1.0)).astype(np.float32)
