"""`curate models`: every model the pipeline can use, where its weights are looked for, and
whether they are there (and, with `check`, whether they load). Each stage lists its own models
(`Stage.models`); this module only asks the registry."""

from __future__ import annotations


def model_rows(config, check: bool = False) -> list[dict]:
    from stages import STAGES

    from .errors import CurateError

    rows = []
    for name, spec in STAGES.items():
        for entry in spec.load().models(config.stage_section(name)):
            found, where = entry.locate()
            row = {"model": entry.name, "enabled": entry.enabled, "weights": entry.weights, "where": where,
                   "found": found}
            if check and entry.enabled and entry.load is not None:
                try:
                    entry.load()
                    row["loads"] = "ok"
                except CurateError as exc:
                    row["loads"] = str(exc)
            rows.append(row)
    return rows
