"""The caption stage against a real local HTTP server (tests/fake_llm.py) that speaks chat completions
with image parts and a multipart upload API; the stage's real client talks to it over TCP."""

import json
import shutil

import polars as pl
import pytest
from conftest import SAMPLES, curate, write_config
from fake_llm import FakeCaptionServer

KEY = "sk-test-caption-0123456789"
ENV = {"TEST_CAPTION_KEY": KEY}


@pytest.fixture(scope="module")
def scored_run(tmp_path_factory):
    """fetch -> score done once over the samples (OCR and NSFW off for speed); tests copy it."""
    root = tmp_path_factory.mktemp("caption")
    inputs = root / "in"
    inputs.mkdir()
    for name in ("cuts_6shots.mp4", "bikes.mp4", "flash_3.mp4"):
        shutil.copy(SAMPLES / name, inputs / name)
    base = write_config(root / "base.yaml", "filter:\n  ocr: {enabled: false}\n  nsfw: {enabled: false}\n")
    curate("local", "-w", root / "run", "-i", inputs, "-c", base, "--no-progress")
    return root


def caption_run(scored_run, tmp_path, server_url, extra="", check=True, provider="openai"):
    workdir = tmp_path / "run"
    shutil.copytree(scored_run / "run", workdir)
    where = (f"  base_url: {server_url}/v1\n" if provider == "openai"
             else f"  provider: api\n  url: {server_url}/upload\n  response_field: result.caption\n")
    cfg = write_config(tmp_path / "c.yaml", "filter:\n  ocr: {enabled: false}\n  nsfw: {enabled: false}\n"
                       "caption:\n  enabled: true\n  model: test/vision-model\n  api_key_env: TEST_CAPTION_KEY\n"
                       + where + extra)
    proc = curate("local", "-w", workdir, "-c", cfg, "--no-progress", check=check, env=ENV)
    return workdir, cfg, proc


def table(workdir):
    return pl.read_parquet(workdir / "metadata" / "clips.parquet")


def kept(workdir):
    return table(workdir).filter(pl.col("status") == "ok")


def test_kept_clips_are_captioned_with_usage_and_the_key_stays_secret(scored_run, tmp_path):
    with FakeCaptionServer() as server:
        workdir, _, proc = caption_run(scored_run, tmp_path, server.url, "  frames: 2\n  max_workers: 3\n")
    clips = kept(workdir)
    assert clips.height >= 8 and clips["caption"].is_not_null().all()
    assert clips["caption_model"].unique().to_list() == ["test/vision-model"]
    assert (clips["caption_tokens_in"] == 200).all() and (clips["caption_cost_usd"] == 0.001).all()
    assert sorted(server.clip_ids()) == sorted(clips["clip_id"].to_list())  # only kept clips, once each
    assert all(r["images"] == 2 and r["auth"] == f"Bearer {KEY}" for r in server.requests)
    filtered = table(workdir).filter(pl.col("status") == "filtered")
    assert filtered.height >= 1 and filtered["caption"].is_null().all()
    status = json.loads(curate("status", "-w", workdir, "--json").stdout)
    progress = status["progress"]["caption"]
    assert progress["captions"] == progress["clips"] == clips.height
    assert progress["cost_usd"] == pytest.approx(0.001 * clips.height)
    assert f"captions: {clips.height} of {clips.height} clips" in curate("status", "-w", workdir).stdout
    for path in [p for p in workdir.rglob("*") if p.is_file()]:
        assert KEY.encode() not in path.read_bytes(), path
    assert KEY not in proc.stdout + proc.stderr


def test_faults_are_retried_and_a_malformed_answer_is_recorded(scored_run, tmp_path):
    with FakeCaptionServer(script=["429", "500", "hang", "malformed"], hang_s=3) as server:
        workdir, _, _ = caption_run(scored_run, tmp_path, server.url,
                                    "  max_workers: 1\n  timeout_s: 1\n  max_retries: 3\n")
    clips = kept(workdir)
    assert clips.height >= 8
    bad = clips.filter(pl.col("caption").is_null())
    assert bad.height == 1 and bad["caption_error"][0].startswith("malformed answer")
    assert clips.filter(pl.col("caption").is_not_null())["caption_error"].is_null().all()
    # 429, 500 and the time-out were retried for the same clip; Retry-After: 1 was honoured
    first, second = server.requests[0], server.requests[1]
    assert first["clip"] == second["clip"] and second["at"] - first["at"] >= 1.0
    assert len(server.requests) == clips.height + 3


def test_a_refused_key_stops_the_task_at_once(scored_run, tmp_path):
    with FakeCaptionServer(script=["401"] * 50) as server:
        workdir, _, proc = caption_run(scored_run, tmp_path, server.url, "  max_workers: 2\n", check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert len(server.requests) <= 2  # what was already in flight, not every clip
    failed = json.loads((workdir / "markers" / "caption" / "00000.failed").read_text())
    assert "HTTP 401" in failed["error"] and "caption.api_key_env" in failed["error"] and KEY not in failed["error"]
    assert not (workdir / "stages" / "caption" / "part-00000.parquet").exists()


def test_concurrency_stays_within_max_workers(scored_run, tmp_path):
    with FakeCaptionServer(latency_s=0.4) as server:
        caption_run(scored_run, tmp_path, server.url, "  max_workers: 3\n")
    assert server.max_inflight == 3


def test_upload_api_provider(scored_run, tmp_path):
    with FakeCaptionServer() as server:
        workdir, _, _ = caption_run(scored_run, tmp_path, server.url,
                                    "  extra_fields: {task: dense-caption}\n  frames: 4\n", provider="api")
    clips = kept(workdir)
    assert clips["caption"].str.starts_with("caption of ").all() and clips["caption_cost_usd"].is_null().all()
    assert all(r["images"] == 4 and r["fields"]["task"] == "dense-caption" and r["fields"]["prompt"]
               for r in server.requests)


def test_max_cost_stops_cleanly_and_a_higher_limit_resumes(scored_run, tmp_path):
    with FakeCaptionServer(cost=0.01) as server:
        workdir, cfg, proc = caption_run(scored_run, tmp_path, server.url, "  max_workers: 1\n  max_cost_usd: 0.03\n",
                                         check=False)
        assert proc.returncode == 1
        failed = json.loads((workdir / "markers" / "caption" / "00000.failed").read_text())
        assert "caption.max_cost_usd=0.03 reached" in failed["error"]
        paid = len(server.requests)
        assert paid == 3
        cfg.write_text(cfg.read_text().replace("max_cost_usd: 0.03", "max_cost_usd: 10"))
        curate("local", "-w", workdir, "-c", cfg, "--no-progress", env=ENV)  # a runtime knob: nothing redone
        assert len(set(server.clip_ids())) == len(server.requests)  # no clip asked twice
    assert kept(workdir)["caption"].is_not_null().all()
