"""`uavm explain --where --faithfulness`: where in the frames, which mel bands, and how faithful
each explanation over time is; known answers on generated clips (uavm.where)."""
import json

import numpy as np
import pytest

from uavm import where as W
from uavm.bundle import load_bundle
from uavm.demo import corpus
from uavm.errors import InputError
from uavm.features import AudioPre
from uavm.inference import Pipeline

from .conftest import ROOT, run_cli


# -- the definitions ---------------------------------------------------------------------------
def test_the_mel_bands_tile_20_hz_to_nyquist_in_increasing_overlapping_order():
    edges = W.mel_edges(AudioPre(), 16)
    assert len(edges) == 16 and edges[0][0] == 20.0 and edges[-1][1] == pytest.approx(8000, abs=0.1)
    assert all(lo < hi for lo, hi in edges)
    assert all(a[0] < b[0] < a[1] < b[1] for a, b in zip(edges, edges[1:]))  # neighbours share a bin's slope


def test_the_area_of_a_curve_is_its_mean_height_over_steps_normalised_to_0_1():
    assert W.area([1, 1, 1]) == 1 and W.area([1, 0, 0]) == 0.25 and W.area([0, 1]) == 0.5


def test_a_segments_importance_is_the_mean_of_the_curve_inside_it():
    got = W.segment_scores([0.25, 0.75, 1.25, 1.75], [1, 3, 5, 7], [(0, 1), (1, 2)])
    assert got.tolist() == [2, 6]


def test_the_grid_cells_tile_the_frame():
    cells = W.cells(128, 100, 6)
    area = sum((y1 - y0) * (x1 - x0) for y0, y1, x0, x1 in cells)
    assert len(cells) == 36 and area == 128 * 100


@pytest.mark.parametrize("kw, says", [({"grid": 0}, "grid"), ({"bands": 65}, "bands"), ({"segments": 1}, "segments"),
                                      ({"permutations": 10**6}, "permutations"), ({"seed": -1}, "seed")])
def test_hostile_parameters_are_one_line_errors(kw, says):
    with pytest.raises(InputError) as e:
        W.check_where(**kw)
    assert says in str(e.value) and "\n" not in str(e.value)


# -- one clip, every model kind ------------------------------------------------------------------
@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    d = tmp_path_factory.mktemp("where")
    meta = corpus.make_clip(d / "dog.mp4", 6, 1234)  # dog barking: one dog picture, its own sound
    return d / "dog.mp4", meta


@pytest.mark.slow
@pytest.mark.parametrize("name", ["demo-uavm", "demo-cross-modal"])
def test_the_two_modality_shapley_values_sum_to_the_fused_scores_change_from_nothing_to_both(clip, name):
    pipe = Pipeline(load_bundle(ROOT + f"/weights/{name}"), "cpu")
    e = pipe.explain(clip[0], faithfulness=True)
    f = e.to_dict()["faithfulness"]
    sm, sg = f["shapley"]["modalities"], f["shapley"]["segments"]
    assert sm["audio"] + sm["video"] == pytest.approx(sm["v_both"] - sm["v_none"], abs=1e-6)
    assert sm["v_both"] == pytest.approx(e.target["score"]["fused"], abs=1e-6)
    # each permutation's marginals sum to the whole change: so do the sampled values
    total = sum(np.sum(v) for v in sg["values"].values())
    assert total == pytest.approx(sg["v_all"] - sg["v_none"], abs=1e-5)
    assert sum(sg["share"].values()) == pytest.approx(sg["v_all"] - sg["v_none"], abs=1e-5)
    for method in ("occlusion", "rollout", "attention", "random"):
        for m in ("audio", "video"):
            c = f[method][m]
            assert len(c["deletion"]) == len(f["segments"]) + 1 and 0 <= c["deletion_auc"] <= 1
            # nothing removed is the plain window; everything restored too
            assert c["deletion"][0] == pytest.approx(e.target["score"]["fused"], abs=1e-4)
            assert c["insertion"][-1] == pytest.approx(e.target["score"]["fused"], abs=1e-4)


@pytest.mark.slow
def test_where_gives_a_map_per_model_frame_and_a_drop_per_band_in_json(clip):
    r = run_cli("explain", clip[0], "--where", "--json", check=True)
    d = json.loads(r.stdout)["where"]
    v, a = d["video"], d["audio"]
    maps, cam = np.array(v["maps"]), np.array(v["gradcam"]["maps"])
    assert maps.shape == (30, 5, 5) and len(v["times"]) == 30 and cam.shape[0] == 30 and (cam >= 0).all()
    assert len(a["bands_hz"]) == len(a["drop"]) == 16 and np.array(a["grid"]).shape == (5, 8)
    assert len(a["span_times"]) == 5 and len(a["grid_bands_hz"]) == 8
    assert "faithfulness" not in json.loads(r.stdout)
    text = run_cli("explain", clip[0], "--where", "--faithfulness", check=True).stdout
    assert "video where" in text and "audio bands" in text and "shapley" in text


@pytest.mark.slow
def test_an_audio_only_clip_has_bands_and_no_video_map(media_dir):
    r = run_cli("explain", media_dir / "audio_only.wav", "--where", "--faithfulness", "--json", check=True)
    d = json.loads(r.stdout)
    assert "video" not in d["where"] and d["where"]["audio"]["drop"]
    assert d["faithfulness"]["shapley"]["modalities"]["undefined"]
    assert set(d["faithfulness"]["occlusion"]) == {"audio", "deletion_auc", "insertion_auc"}


# -- known answers on generated clips ------------------------------------------------------------
def box_cells(box, grid):
    """The grid cells a box [x0, y0, x1, y1] (fractions) overlaps."""
    x0, y0, x1, y1 = box
    return {(r, c) for r in range(grid) for c in range(grid)
            if r / grid < y1 and (r + 1) / grid > y0 and c / grid < x1 and (c + 1) / grid > x0}


@pytest.fixture(scope="module")
def explained(tmp_path_factory):
    d = tmp_path_factory.mktemp("where-set")
    out = corpus.generate(d, 1, seed=21, split="where", workers=1)
    data = json.loads((out / "clips.json").read_text())["data"]
    pipe = Pipeline(load_bundle(ROOT + "/weights/demo-uavm"), "cpu")
    # two siren and two ringing classes (their picture tells them apart), two dog and two keyboard classes
    # (their sound does)
    picks = [e for e in data if int(e["video"].split("_")[1]) in (0, 1, 3, 4, 6, 7, 9, 10)]
    return pipe, [(m, pipe.explain(out / m["video"], where=True, faithfulness=True).to_dict()) for m in picks]


@pytest.mark.slow
def test_the_video_maps_peak_lies_in_the_events_box_in_most_frames_it_is_seen(explained):
    hits, chance = [], []
    for meta, d in explained[1]:
        v = d["where"]["video"]
        g = v["grid"][0]
        for t, m in zip(v["times"], np.array(v["maps"])):
            ev = [e for e in meta["events"] if e[0] <= t < e[1]]
            if not ev:
                continue
            inside = box_cells(ev[0][2], g)
            r, c = divmod(int(np.argmax(m)), g)
            hits.append((r, c) in inside)
            chance.append(len(inside) / g**2)
    assert len(hits) > 20 and np.mean(hits) > 0.5 and np.mean(hits) > np.mean(chance) + 0.2, (np.mean(hits),
                                                                                             np.mean(chance))


@pytest.mark.slow
def test_the_bands_of_the_events_sound_matter_more_than_the_others(explained):
    from uavm.tools.wherebench import sound_bands

    pipe, more = explained[0], []
    for meta, d in explained[1]:
        if meta["sound"] in ("siren", "ring"):  # a sound three classes share: the picture decides
            continue
        drop = np.asarray(d["where"]["audio"]["drop"])
        own = sorted(sound_bands(pipe, meta["sound"], len(drop)))  # where the recipe puts the most energy
        more.append(drop[own].mean() > np.delete(drop, own).mean())
    # occluding the sound's own 4 of 16 bands costs more than occluding the other 12
    assert np.mean(more) >= 3 / 4, more


@pytest.mark.slow
def test_occlusions_deletion_area_is_below_the_random_rankings_on_most_clips(explained):
    below = [d["faithfulness"]["occlusion"]["deletion_auc"] < d["faithfulness"]["random"]["deletion_auc"]
             for _, d in explained[1]]
    assert np.mean(below) > 0.5, below
