"""The score stage: weight-free quality on real footage, and every model scorer through its real
loading and inference code on weights these tests build with the published key names and shapes."""

import json
import math

import polars as pl
import pytest
from conftest import DATA, SAMPLES, curate, ffmpeg, write_config

from stages.decode import scan_clips

torch = pytest.importorskip("torch")


def score_one(scorer, path, seconds=3.0):
    scorer.preflight()
    (scan,) = scan_clips(str(path), [{"start_s": 0.0, "end_s": seconds}], [scorer])
    assert scan.frames > 0
    return scorer.end()


def test_quality_noise_is_immerkaers_full_kernel_exactly():
    """The noise measure filters with Immerkaer's 3x3 kernel as two 1D passes in 16-bit integers: the
    same value as the 2D float filter, on real frames of several sizes."""
    import cv2
    import numpy as np

    from stages.decode import iter_frames
    from stages.sampling import FrameNeed
    from stages.scorers.quality import frame_measures

    kernel = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], dtype=np.float32)
    for path in (DATA / "mma_skeleton_fixed_camera.mp4", DATA / "textures_pan.mp4", SAMPLES / "bikes.mp4"):
        for frame in list(iter_frames(str(path)))[::25]:
            gray = frame.image(FrameNeed(color="gray"))
            response = cv2.filter2D(gray, cv2.CV_32F, kernel)[1:-1, 1:-1]
            expected = math.sqrt(math.pi / 2) * cv2.norm(response, cv2.NORM_L1) / response.size / 6
            assert frame_measures(gray)["noise"] == expected > 0


def test_quality_and_dover_take_frames_smaller_than_their_windows():
    """A 2x2 frame has no interior for the noise kernel (a division by zero failed its clip); a side under
    DOVER's 32-px fragment gave an empty slice (a broadcast error). Both now measure such frames."""
    import numpy as np

    from stages.scorers.dover import FRAGMENT, DoverConfig, DoverSampler
    from stages.scorers.quality import frame_measures

    rng = np.random.default_rng(0)
    for height, width in [(2, 2), (1, 5), (2, 200), (8, 8), (200, 6), (31, 40)]:
        gray = rng.integers(0, 256, (height, width), dtype=np.uint8)
        assert all(math.isfinite(v) for v in frame_measures(gray).values()), (height, width)
        sampler = DoverSampler(8, DoverConfig(clip_len=4, technical_clips=2, frames=2), np.random.default_rng(1))
        image = np.full((height, width, 3), 200, dtype=np.uint8)
        for ordinal in range(8):
            if sampler.wants(ordinal):
                sampler.take(ordinal, image)
        (technical, aesthetic), = sampler.items()
        assert technical.shape[1:3] == (7 * FRAGMENT, 7 * FRAGMENT)
        assert technical.min() > 150 and aesthetic.min() > 150, (height, width)  # every fragment filled from the frame


def test_quality_ranks_sharp_above_blurred_and_compressed(tmp_path):
    from stages.scorers.quality import QualityConfig, QualityScorer

    sharp = tmp_path / "sharp.mp4"
    ffmpeg("-i", str(DATA / "nosubs_720p.mp4"), "-t", "3", "-c:v", "libx264", "-crf", "16", str(sharp))
    variants = {"sharp": sharp}
    for name, args in {"blurred": ["-vf", "gblur=sigma=3", "-crf", "16"], "compressed": ["-crf", "48"],
                       "upscaled": ["-vf", "scale=320:-2,scale=1280:720", "-crf", "16"]}.items():
        variants[name] = tmp_path / f"{name}.mp4"
        ffmpeg("-i", str(sharp), *args[:-2], "-c:v", "libx264", *args[-2:], str(variants[name]))
    scores = {name: score_one(QualityScorer(QualityConfig()), path) for name, path in variants.items()}
    for worse in ("blurred", "compressed", "upscaled"):
        assert scores["sharp"]["quality"] > scores[worse]["quality"] + 0.3, scores
        assert scores["sharp"]["sharpness"] > 3 * scores[worse]["sharpness"]
    assert scores["compressed"]["blockiness"] > scores["sharp"]["blockiness"] + 0.05
    assert all(0 <= s["quality"] <= 1 and s["exposure"] > 0.9 for s in scores.values())


def tiny_clip(tmp_path):
    """A CLIP of the ViT-L/14 family shape (768-wide embedding) but tiny, saved as open_clip does."""
    import open_clip

    spec = {"embed_dim": 768, "quick_gelu": True,
            "vision_cfg": {"image_size": 224, "layers": 2, "width": 64, "patch_size": 32, "head_width": 32},
            "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 1}}
    config = tmp_path / "tiny-clip-test.json"
    config.write_text(json.dumps(spec))
    open_clip.add_model_config(str(config))
    torch.manual_seed(0)
    weights = tmp_path / "open_clip_pytorch_model.bin"
    torch.save(open_clip.create_model("tiny-clip-test").state_dict(), weights)
    return config, weights


def laion_heads(tmp_path, width=768):
    """The two published LAION heads, by their key names and shapes."""
    torch.manual_seed(1)
    linear = tmp_path / "sa_0_4_vit_l_14_linear.pth"
    torch.save({"weight": torch.randn(1, width) * 0.5, "bias": torch.tensor([5.0])}, linear)
    sizes = [width, 1024, 128, 64, 16, 1]
    mlp_state = {}
    for index, (a, b) in zip((0, 2, 4, 6, 7), zip(sizes, sizes[1:])):
        mlp_state[f"layers.{index}.weight"] = torch.randn(b, a) * (1 / math.sqrt(a))
        mlp_state[f"layers.{index}.bias"] = torch.full((b,), 0.1)
    mlp = tmp_path / "sac+logos+ava1-l14-linearMSE.pth"
    torch.save(mlp_state, mlp)
    return linear, mlp


def run_score(tmp_path, workdir, score_yaml, names=("carphone_pristine.mp4", "flash_3.mp4"), check=True, env=None):
    inputs = tmp_path / "in"
    inputs.mkdir(exist_ok=True)
    for name in names:
        (inputs / name).write_bytes((SAMPLES / name).read_bytes())
    cfg = write_config(tmp_path / "c.yaml", "filter:\n  ocr: {enabled: false}\n  nsfw: {enabled: false}\n"
                       "score:\n" + score_yaml)
    proc = curate("local", "-w", workdir, "-i", inputs, "-c", cfg, "--no-progress", check=check, env=env)
    table = pl.read_parquet(workdir / "metadata" / "clips.parquet") if proc.returncode == 0 else None
    return proc, table


def test_laion_aes_loads_both_published_heads_and_scores_kept_clips(tmp_path):
    config, weights = tiny_clip(tmp_path)
    linear, mlp = laion_heads(tmp_path)
    results = {}
    for head in (linear, mlp):
        yaml = (f"  laion_aes:\n    enabled: true\n    frames: 2\n    clip_model: tiny-clip-test\n"
                f"    clip_config: {config}\n    clip: {{path: {weights}}}\n    head: {{path: '{head}'}}\n")
        _, table = run_score(tmp_path, tmp_path / f"run-{head.stem}", yaml)
        kept = table.filter(pl.col("status") == "ok")
        assert kept.height >= 1 and kept["aesthetic"].is_not_null().all()
        assert (kept["aesthetic_min"] <= kept["aesthetic"]).all() and (kept["aesthetic"] <= kept["aesthetic_max"]).all()
        # the flash clip fails a filter threshold: with only_kept it is never scored
        flashed = table.filter(pl.col("relpath") == "flash_3.mp4")
        assert flashed["status"].to_list() == ["filtered"] and flashed["aesthetic"].is_null().all()
        assert table.filter(pl.col("status") == "ok")["quality"].is_not_null().all()
        results[head.stem] = kept["aesthetic"].to_list()
    assert results[linear.stem] != results[mlp.stem]
    assert all(math.isfinite(v) for values in results.values() for v in values)


def test_wrong_or_missing_weights_stop_before_any_work(tmp_path):
    config, weights = tiny_clip(tmp_path)
    (tmp_path / "narrow").mkdir()
    narrow, _ = laion_heads(tmp_path / "narrow", width=512)
    base = f"  laion_aes:\n    enabled: true\n    clip_model: tiny-clip-test\n    clip_config: {config}\n"
    cases = {
        "wrong-head": (base + f"    clip: {{path: {weights}}}\n    head: {{path: '{narrow}'}}\n",
                       "takes 512-wide embeddings but tiny-clip-test gives 768"),
        "no-head": (base + f"    clip: {{path: {weights}}}\n    head: {{path: {tmp_path}/nope.pth}}\n",
                    f"weights file {tmp_path}/nope.pth does not exist; get sa_0_4_vit_l_14_linear.pth"),
        "hub-offline": (base + f"    head: {{path: '{narrow}'}}\n",
                        "hf download timm/vit_large_patch14_clip_224.openai open_clip_pytorch_model.bin"),
    }
    for name, (yaml, expected) in cases.items():
        workdir = tmp_path / name
        proc, _ = run_score(tmp_path, workdir, yaml, check=False,
                            env={"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "empty-hf-home")})
        # every stage's preflight runs before any task: not even fetch ran
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
        assert expected in proc.stderr, (name, proc.stderr)
        assert not list(workdir.glob("markers/*/*.done")) and not (workdir / "stages").exists()
    # a checkpoint with the right names but a wrong shape names the tensors
    state = torch.load(weights, weights_only=True)
    state["visual.proj"] = torch.zeros(64, 512)
    torch.save(state, tmp_path / "bad_clip.bin")
    proc, _ = run_score(tmp_path, tmp_path / "bad-clip",
                        base + f"    clip: {{path: {tmp_path}/bad_clip.bin}}\n    head: {{path: '{narrow}'}}\n",
                        check=False)
    assert proc.returncode == 2
    assert "wrong shapes (1): visual.proj: file (64, 512) vs model (64, 768)" in proc.stderr


def tiny_classifier(folder, labels=("clean", "watermark")):
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

    torch.manual_seed(2)
    config = ViTConfig(image_size=64, patch_size=16, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                       intermediate_size=37, num_labels=len(labels), id2label=dict(enumerate(labels)),
                       label2id={v: k for k, v in enumerate(labels)})
    ViTForImageClassification(config).save_pretrained(folder)
    ViTImageProcessor(size={"height": 64, "width": 64}).save_pretrained(folder)
    return folder


def test_classifier_from_a_local_folder_and_its_threshold(tmp_path):
    model = tiny_classifier(tmp_path / "watermark-vit")
    yaml = f"  classifiers:\n    - {{model: {model}, label: watermark, frames: 2}}\n"
    _, table = run_score(tmp_path, tmp_path / "run", yaml)
    kept = table.filter(pl.col("status") == "ok")
    assert kept.height >= 1 and kept["watermark"].is_between(0, 1).all()
    assert (kept["watermark_mean"] <= kept["watermark"]).all()
    # a threshold is a decision at export: max 0 drops every scored clip, with the reason, no rerun
    cfg = tmp_path / "c.yaml"
    done = (tmp_path / "run" / "markers" / "score" / "00000.done").read_text()
    cfg.write_text(cfg.read_text().replace("frames: 2}", "frames: 2, max: 0.0}"))
    curate("local", "-w", tmp_path / "run", "-c", cfg, "--no-progress")
    assert (tmp_path / "run" / "markers" / "score" / "00000.done").read_text() == done
    table = pl.read_parquet(tmp_path / "run" / "metadata" / "clips.parquet")
    scored = table.filter(pl.col("watermark").is_not_null())
    assert scored.height == kept.height and set(scored["status"]) == {"filtered"}
    assert (scored["reason"][0].startswith("classifier: watermark ")
            and "> score.classifiers[0].max 0" in scored["reason"][0])


def test_classifier_label_must_be_a_class_of_the_model(tmp_path):
    model = tiny_classifier(tmp_path / "m")
    proc, _ = run_score(tmp_path, tmp_path / "run", f"  classifiers:\n    - {{model: {model}, label: logo}}\n",
                        check=False)
    assert proc.returncode == 2
    assert "score.classifiers[0].label 'logo' is not a class" in proc.stderr and "clean, watermark" in proc.stderr


def test_only_kept_makes_filter_thresholds_part_of_the_score_fingerprint():
    from curate.config import validate_config
    from curate.plan import stage_fingerprints

    base = stage_fingerprints(validate_config({}), "m")
    looser = stage_fingerprints(validate_config({"filter": {"flash": {"max_flash_ratio": 0.5}}}), "m")
    assert base["filter"] == looser["filter"] and base["score"] != looser["score"]
    every = stage_fingerprints(validate_config({"score": {"only_kept": False}}), "m")
    every_looser = stage_fingerprints(validate_config({"score": {"only_kept": False},
                                                       "filter": {"flash": {"max_flash_ratio": 0.5}}}), "m")
    assert every["score"] == every_looser["score"]
    # a scorer threshold is a decision too: it never changes the fingerprint
    strict = stage_fingerprints(validate_config({"score": {"quality": {"min": 0.5}}}), "m")
    assert strict["score"] == base["score"]


def test_models_command_reports_what_is_found(tmp_path):
    model = tiny_classifier(tmp_path / "m")
    _, head = laion_heads(tmp_path)
    cfg = write_config(tmp_path / "c.yaml", f"score:\n  laion_aes: {{enabled: true, head: {{path: '{head}'}}}}\n"
                       f"  classifiers:\n    - {{model: {model}, label: watermark}}\n")
    proc = curate("models", "-c", cfg, "--json", check=False, env={"HF_HOME": str(tmp_path / "hf")})
    rows = {r["model"]: r for r in json.loads(proc.stdout)}
    assert rows["score.quality"]["found"] and rows["score.laion_aes.head"]["found"]
    assert not rows["score.laion_aes.clip"]["found"] and rows["score.laion_aes.clip"]["where"] == "not in the HF cache"
    assert rows["score.classifiers[0] (watermark)"]["found"] and rows["filter.ocr"]["found"]
    assert proc.returncode == 1  # an enabled model without its weights
    text = curate("models", "-c", cfg, check=False, env={"HF_HOME": str(tmp_path / "hf")})
    assert "enabled models without usable weights: score.laion_aes.clip" in text.stderr


# Tensors of the published DOVER.pth (names and shapes as its original code builds them).
DOVER_KEYS = {
    "technical_backbone.patch_embed.proj.weight": (96, 3, 2, 4, 4),
    "technical_backbone.layers.0.blocks.0.attn.relative_position_bias_table": (2535, 3),
    "technical_backbone.layers.0.blocks.1.attn.fragment_position_bias_table": (2535, 3),
    "technical_backbone.layers.0.blocks.0.attn.relative_position_index": (392, 392),
    "technical_backbone.layers.2.blocks.5.attn.qkv.weight": (1152, 384),
    "technical_backbone.layers.2.downsample.reduction.weight": (768, 1536),
    "technical_backbone.layers.3.blocks.1.mlp.fc2.weight": (768, 3072),
    "technical_backbone.norm.weight": (768,),
    "aesthetic_backbone.downsample_layers.0.0.weight": (96, 3, 2, 4, 4),
    "aesthetic_backbone.downsample_layers.3.1.weight": (768, 384, 1, 2, 2),
    "aesthetic_backbone.stages.2.7.dwconv.weight": (384, 1, 3, 7, 7),
    "aesthetic_backbone.stages.2.8.gamma": (384,),
    "technical_head.fc_hid.weight": (64, 768, 1, 1, 1),
    "aesthetic_head.fc_last.weight": (1, 64, 1, 1, 1),
}


def dover_weights(path):
    from stages.scorers.dover_net import Dover

    torch.manual_seed(3)
    state = {k: (torch.randn_like(v) * 0.02 if v.dtype.is_floating_point else v)
             for k, v in Dover().state_dict().items()}
    for key, shape in DOVER_KEYS.items():
        assert tuple(state[key].shape) == shape, key
    assert not any(k.startswith("technical_backbone.layers.3.") and "fragment" in k for k in state)
    torch.save(state, path)
    return path


def test_dover_scores_with_the_published_layout_and_stops_on_a_mismatch(tmp_path):
    from stages.scorers.dover import fuse

    weights = dover_weights(tmp_path / "DOVER.pth")
    quick = "    clip_len: 8\n    technical_clips: 1\n    frames: 8\n"  # the original's sampling, fewer frames
    _, table = run_score(tmp_path, tmp_path / "run", f"  dover:\n    enabled: true\n    weights: {{path: {weights}}}\n"
                         + quick, names=("carphone_pristine.mp4",))
    (row,) = table.filter(pl.col("status") == "ok").to_dicts()
    assert 0 < row["dover"] < 1 and math.isfinite(row["dover_technical"]) and math.isfinite(row["dover_aesthetic"])
    assert row["dover"] == pytest.approx(fuse(row["dover_technical"], row["dover_aesthetic"]), abs=1e-3)
    # the same clip again gives the same score: the sampling offsets are seeded by the clip id
    _, again = run_score(tmp_path, tmp_path / "run2", f"  dover:\n    enabled: true\n    weights: {{path: {weights}}}\n"
                         + quick, names=("carphone_pristine.mp4",))
    assert again.filter(pl.col("status") == "ok")["dover"].to_list() == [row["dover"]]
    state = torch.load(weights, weights_only=True)
    state["aesthetic_head.fc_hid.weight"] = torch.zeros(32, 768, 1, 1, 1)
    del state["technical_head.fc_last.bias"]
    torch.save(state, tmp_path / "bad.pth")
    proc, _ = run_score(tmp_path, tmp_path / "bad",
                        f"  dover:\n    enabled: true\n    weights: {{path: {tmp_path}/bad.pth}}\n",
                        names=("carphone_pristine.mp4",), check=False)
    assert proc.returncode == 2
    assert "wrong shapes (1): aesthetic_head.fc_hid.weight: file (32, 768, 1, 1, 1) vs model (64, 768, 1, 1, 1)" \
        in proc.stderr and "missing keys (1): technical_head.fc_last.bias" in proc.stderr
    assert "github.com/VQAssessment/DOVER" in proc.stderr


# Tensors of the published gmflow-scale1-mixdata-train320x576-4c3a6e9a.pth (under its "model" key).
GMFLOW_KEYS = {
    "backbone.conv1.weight": (64, 3, 7, 7),
    "backbone.layer2.0.downsample.0.weight": (96, 64, 1, 1),
    "backbone.layer3.1.conv2.weight": (128, 128, 3, 3),
    "backbone.conv2.bias": (128,),
    "transformer.layers.5.self_attn.q_proj.weight": (128, 128),
    "transformer.layers.0.cross_attn_ffn.mlp.0.weight": (1024, 256),
    "transformer.layers.0.cross_attn_ffn.mlp.2.weight": (128, 1024),
    "transformer.layers.3.cross_attn_ffn.norm2.bias": (128,),
    "feature_flow_attn.k_proj.bias": (128,),
    "upsampler.0.weight": (256, 130, 3, 3),
    "upsampler.2.weight": (576, 256, 1, 1),
}


def test_unimatch_flow_with_the_published_layout(tmp_path):
    from stages.scorers.unimatch_net import GMFlow

    torch.manual_seed(4)
    state = {k: v + torch.randn_like(v) * 0.02 for k, v in GMFlow().state_dict().items()}
    for key, shape in GMFLOW_KEYS.items():
        assert tuple(state[key].shape) == shape, key
    assert not any("norm" in k and k.startswith("backbone.") for k in state)  # instance norms hold no weights
    weights = tmp_path / "gmflow-scale1-mixdata-train320x576-4c3a6e9a.pth"
    torch.save({"model": state, "step": 100000}, weights)  # as the model zoo ships it
    yaml = f"  unimatch:\n    enabled: true\n    frame_indices: [0, 10, 20]\n    weights: {{path: {weights}}}\n"
    _, table = run_score(tmp_path, tmp_path / "run", yaml, names=("carphone_pristine.mp4",))
    (row,) = table.filter(pl.col("status") == "ok").to_dicts()
    assert 0 < row["unimatch_flow"] <= row["unimatch_flow_max"] and math.isfinite(row["unimatch_flow_max"])


def test_scorers_in_parallel_give_the_same_scores(tmp_path):
    model = tiny_classifier(tmp_path / "m")
    tables = {}
    for workers in (1, 2):
        yaml = (f"  workers: {workers}\n  queue_clips: 1\n  classifiers:\n    - {{model: {model}, label: watermark, "
                f"batch_size: 2}}\n")
        _, table = run_score(tmp_path, tmp_path / f"run{workers}", yaml, names=("cuts_6shots.mp4",))
        tables[workers] = table.sort("clip_id").select("clip_id", "quality", "watermark", "watermark_mean")
    assert tables[1].height >= 4 and tables[1]["watermark"].is_not_null().sum() >= 4
    assert tables[1].equals(tables[2])
    done = json.loads((tmp_path / "run2" / "markers" / "score" / "00000.done").read_text())
    assert done["clips_scored"] >= 4 and set(done["infer_s"]) == {"quality", "watermark"}


def test_decode_workers_give_the_same_scores_as_one_producer(tmp_path):
    """score.decode_workers: 2 spawns two processes that decode and preprocess (torch tensors for
    the classifier, numpy for quality) for the task's model side: same scores as the producer thread."""
    model = tiny_classifier(tmp_path / "m")
    tables, done = {}, {}
    for workers in (1, 2):
        yaml = (f"  decode_workers: {workers}\n  classifiers:\n    - {{model: {model}, label: watermark, "
                f"batch_size: 4}}\n")
        _, table = run_score(tmp_path, tmp_path / f"run{workers}", yaml, names=("cuts_6shots.mp4", "bikes.mp4"))
        tables[workers] = table.sort("clip_id").select("clip_id", "status", "quality", "watermark")
        done[workers] = json.loads((tmp_path / f"run{workers}" / "markers" / "score" / "00000.done").read_text())
    assert tables[1]["watermark"].is_not_null().sum() >= 5
    assert tables[1].equals(tables[2])
    assert done[2]["clips_scored"] == done[1]["clips_scored"]
    assert done[2]["decode_workers"] == 2 and "decode_workers" not in done[1]


def test_decode_worker_groups_weigh_the_compressed_bytes():
    """A high-bitrate small video costs the decoder as much as a big one of few bytes per frame: the
    groups of score.decode_workers are balanced by frames x pixels plus the clips' share of the bytes."""
    from stages.score_workers import balanced_groups, decode_cost

    def clips(video, width, height, size):
        return [{"clip_id": f"{video}-{n}", "video_id": video, "path": f"{video}.mp4", "start_s": 3.0 * n,
                 "end_s": 3.0 * n + 3, "fps": 25, "width": width, "height": height, "bytes": size,
                 "duration_s": 12.0} for n in range(4)]

    dense = clips("dense", 176, 144, 40_000_000)  # 40 MB in 12 s of 176x144
    light = clips("light", 1280, 720, 2_000_000)
    assert decode_cost(dense[0]) > 2 * decode_cost({**dense[0], "bytes": None})
    assert decode_cost(dense[0]) == 75 * 176 * 144 + 220 * 10_000_000  # a quarter of the file's bytes
    groups = balanced_groups(dense + light, 2)
    loads = [sum(decode_cost(c) for c in group) for group in groups]
    assert len(groups) == 2 and max(loads) <= 1.2 * min(loads)
    # by pixels alone the dense video looks like a sixth of the work, and the groups so made are not even
    by_pixels = balanced_groups([{**c, "bytes": None} for c in dense + light], 2)
    true_loads = [sum(decode_cost(next(d for d in dense + light if d["clip_id"] == c["clip_id"])) for c in group)
                  for group in by_pixels]
    assert max(true_loads) > 1.5 * min(true_loads)
