"""`uavm bench` prints its figures; `uavm predict DIR` runs the folder path."""
import json

from .conftest import json_lines, run_cli


def test_bench_reports_every_stage_and_the_backbone_ratio():
    r = run_cli("bench", "--size", "tiny", "--clips", "2", "--repeat", "1", "--json", "--device", "cpu")
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout.strip().splitlines()[-1])
    assert {"decode", "fbank", "audio_cnn", "video_cnn", "transformer_with_attention"} <= set(rep["stages_ms"])
    for k in ("cold_start_ms", "warm_end_to_end_ms", "batch_clips_per_s", "backbone_alone_clips_per_s", "peak_rss_mb"):
        assert rep[k] > 0, k
    assert rep["end_to_end_over_backbone"] == round(rep["batch_clips_per_s"] / rep["backbone_alone_clips_per_s"], 3)


def test_predict_on_a_folder_answers_for_every_media_file_in_order(media_dir, tiny_bundle, tmp_path):
    (tmp_path / "sub").mkdir()
    for name in ("av.mp4", "audio_only.wav"):
        (tmp_path / "sub" / name).write_bytes((media_dir / name).read_bytes())
    (tmp_path / "sub" / "notes.txt").write_text("not media")
    r = run_cli("predict", tmp_path, "--bundle", tiny_bundle, "--json")
    assert r.returncode == 0, r.stderr
    out = json_lines(r.stdout)
    assert [o["clip"].rsplit("/", 1)[-1] for o in out] == ["audio_only.wav", "av.mp4"]
    single = json_lines(run_cli("predict", media_dir / "av.mp4", "--bundle", tiny_bundle, "--json").stdout)[0]
    assert out[1]["fused"]["logits"] == single["fused"]["logits"]
