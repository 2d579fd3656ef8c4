"""A generated audio-visual event corpus for the embedded demo model.

Twelve classes, each named after a VGGSound class, in four groups of three:

* sirens: ambulance / police car / fire truck. One siren sound, three vehicles.
* ringing: church bell / telephone bell / alarm clock. One ringing sound, three pictures.
* dogs: barking / howling / growling. One dog picture, three sounds.
* keyboards: piano / electronic organ / harpsichord. One keyboard picture, three sounds.

So audio alone cannot tell apart the classes within a siren or ringing group, video
alone cannot within a dog or keyboard group, and the two together resolve all twelve:
the situation the paper's fusion is about. In every clip the object appears and
sounds at the same random moments (1-3 events), over a varying background with
moving distractor shapes, distractor sounds, noise and random loudness. Everything is
procedural numpy; clips are MP4 (H.264 + AAC), 224x224, 15 fps, 16 kHz mono, 10 s.
"""
from __future__ import annotations

import hashlib
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from ..media import write_media
from .events import FPS, SECONDS, SIZE, SR, Event, draw_events  # noqa: F401  (the corpus's API)
from .pictures import frames, sprite  # noqa: F401
from .sounds import solo, sound, soundtrack  # noqa: F401

# (display name, VGGSound mid, picture, sound)
CLASSES = [
    ("ambulance siren", "vgg_0", "ambulance", "siren"),
    ("police car (siren)", "vgg_37", "police_car", "siren"),
    ("fire truck siren", "vgg_79", "fire_truck", "siren"),
    ("church bell ringing", "vgg_119", "church", "ring"),
    ("telephone bell ringing", "vgg_301", "telephone", "ring"),
    ("alarm clock ringing", "vgg_239", "alarm_clock", "ring"),
    ("dog barking", "vgg_125", "dog", "bark"),
    ("dog howling", "vgg_83", "dog", "howl"),
    ("dog growling", "vgg_112", "dog", "growl"),
    ("playing piano", "vgg_33", "keyboard", "piano"),
    ("playing electronic organ", "vgg_110", "keyboard", "organ"),
    ("playing harpsichord", "vgg_52", "keyboard", "harpsichord"),
]
PICTURES = sorted({c[2] for c in CLASSES})  # the video extractor learns these (plus "none")
SOUNDS = sorted({c[3] for c in CLASSES})  # and the audio extractor these


def clip_seed(seed: int, split: str, cls: int, i: int) -> int:
    h = hashlib.sha256(f"{seed}/{split}/{cls}/{i}".encode()).digest()
    return int.from_bytes(h[:8], "little")


# -- the corpus ---------------------------------------------------------------------------
def make_clip(path, cls: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    name, mid, picture, snd = CLASSES[cls]
    events = draw_events(rng)
    wav = soundtrack(snd, events, rng)
    boxes = []
    vid = frames(picture, events, rng, boxes)
    write_media(path, vid, FPS, wav, SR, options={"crf": "26", "preset": "veryfast"})
    # each event: [start, end, box], the box where its picture is (fractions of the frame)
    return {"label": mid, "name": name,
            "events": [[round(e.start, 3), round(e.end, 3), b] for e, b in zip(events, boxes)],
            "picture": picture, "sound": snd}


def _job(args):
    path, cls, seed = args
    return make_clip(path, cls, seed)


def generate(out, clips_per_class: int, seed: int, split: str = "train", workers: int = 0, progress=None) -> Path:
    """Write ``out/clips/*.mp4``, ``out/clips.json``, ``out/labels.csv`` and
    ``out/vggsounder.csv`` (``vggsounder_rows``); deterministic in (seed, split)."""
    from ..bundle import write_labels
    from ..files import write_json

    out = Path(out)
    (out / "clips").mkdir(parents=True, exist_ok=True)
    jobs = [(out / "clips" / f"{split}_{c:02d}_{i:04d}.mp4", c, clip_seed(seed, split, c, i))
            for i in range(clips_per_class) for c in range(len(CLASSES))]
    workers = workers or min(os.cpu_count() or 1, 8)
    if workers > 1:
        with ProcessPoolExecutor(workers) as ex:
            metas = list(progress(ex.map(_job, jobs, chunksize=4), total=len(jobs)) if progress else ex.map(_job, jobs, chunksize=4))
    else:
        metas = [_job(j) for j in (progress(jobs) if progress else jobs)]
    data = [{"video": str(p.relative_to(out)), "labels": m["label"], **{k: m[k] for k in ("name", "events", "picture", "sound")}}
            for (p, _, _), m in zip(jobs, metas)]
    write_json(out / "clips.json", {"seed": seed, "split": split, "data": data})
    write_labels(out / "labels.csv", labels())
    write_vggsounder(out / "vggsounder.csv", [(p.stem, c) for p, c, _ in jobs])
    return out


def vggsounder_rows(video_id: str, cls: int) -> list:
    """A clip of class ``cls`` annotated as VGGSounder annotates (``uavm.analysis.vggsounder``),
    from the corpus's design: its own class is "AV" (its sound is heard and its picture seen);
    every other class with the same sound is "A" (the clip sounds exactly like it); every other
    class with the same picture is "V" (it looks exactly like it); no meta flag is set."""
    _, _, picture, snd = CLASSES[cls]
    rows = []
    for j, (name, _, pic, s) in enumerate(CLASSES):
        tag = "AV" if j == cls else "A" if s == snd else "V" if pic == picture else None
        if tag:
            rows.append({"video_id": video_id, "label": name, "modality": tag, "background_music": "False",
                         "static_image": "False", "voice_over": "False"})
    return rows


def write_vggsounder(path, clips) -> Path:
    """``clips``: (video id = the clip file's stem, class) pairs -> a VGGSounder annotation CSV."""
    import csv

    from ..files import atomic

    with atomic(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=["video_id", "label", "modality", "background_music", "static_image",
                                          "voice_over"])
        w.writeheader()
        for video_id, c in clips:
            w.writerows(vggsounder_rows(video_id, c))
    return Path(path)


def cycled(folder, n: int, seed: int, split: str) -> list:
    """n clips in ``folder`` cycling through the classes, each seeded from (seed, split,
    class, i) as ``generate`` seeds its own -> [(path, its clips.json entry)]."""
    out = []
    for i in range(n):
        c = i % len(CLASSES)
        path = Path(folder) / f"{i:04d}.mp4"
        out.append((path, make_clip(path, c, clip_seed(seed, split, c, i))))
    return out


def labels() -> list:
    from ..bundle import Label

    return [Label(i, mid, name) for i, (name, mid, _, _) in enumerate(CLASSES)]


def example_name(c: int) -> str:
    """The file stem of class ``c``'s example clip."""
    return CLASSES[c][0].replace(" ", "_").replace("(", "").replace(")", "")


def example_caption(c: int) -> dict:
    """What class ``c``'s example clip is and what to try with it (the explorer's captions)."""
    name, _, picture, snd = CLASSES[c]
    same_sound = [o[0] for o in CLASSES if o[3] == snd and o[0] != name]
    same_picture = [o[0] for o in CLASSES if o[2] == picture and o[0] != name]
    if same_sound:
        tip = f"sounds like {' and '.join(same_sound)}: turn the video off and the answer can only guess among them"
    elif same_picture:
        tip = f"looks like {' and '.join(same_picture)}: turn the audio off and the answer can only guess among them"
    else:
        tip = "try muting the audio or blanking the video where the event happens"
    return {"label": name, "tip": tip}
