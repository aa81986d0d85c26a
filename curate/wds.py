"""WebDataset shards: tars of about `shard_size_mb`, each sample `<key>.mp4` + `<key>.json` (every
column of the clip's row) + `<key>.txt` (its caption), as the `webdataset` library and the
`datasets` webdataset builder read them (a sample's files are adjacent and share the key; a key
holds no dot).

A shard is written under a temporary name and renamed, and its bytes depend only on its samples
(members sorted, fixed times and owners), so a rerun writes the same shard, which an upload
then finds already there: a shard in the target is complete or absent.
"""

from __future__ import annotations

import io
import json
import os
import re
import tarfile
from pathlib import Path

SUFFIX = ".tar"


def sample_key(clip_id: str) -> str:
    """A clip id as a webdataset key: no dot (it would split the key) and no slash."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", str(clip_id))


def _member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode, info.uid, info.gid, info.uname, info.gname = len(data), 0, 0o644, 0, 0, "", ""
    tar.addfile(info, io.BytesIO(data))


def write_shard(dest: Path, samples: list[dict]) -> None:
    """One tar of `samples` (each: key, video (a Path), ext, meta (a dict), caption (str or None))."""
    tmp = dest.with_name(f".{dest.name}.tmp")
    try:
        with tarfile.open(tmp, "w", format=tarfile.USTAR_FORMAT) as tar:
            for s in samples:
                _member(tar, f"{s['key']}{s['ext']}", Path(s["video"]).read_bytes())
                _member(tar, f"{s['key']}.json", json.dumps(s["meta"], sort_keys=True, default=str).encode())
                _member(tar, f"{s['key']}.txt", (s.get("caption") or "").encode())
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def plan_shards(samples: list[dict], limit_bytes: float) -> list[list[dict]]:
    """Samples in groups of about limit_bytes of video each (a bigger clip is a shard of its own)."""
    out: list[list[dict]] = [[]]
    size = 0
    for s in samples:
        n = Path(s["video"]).stat().st_size
        if out[-1] and size + n > limit_bytes:
            out.append([])
            size = 0
        out[-1].append(s)
        size += n
    return [g for g in out if g]


def shard_index(shards: list[dict]) -> dict:
    """The wids shard index (`shards.json`): every shard's path relative to the root and its sample count."""
    return {"__kind__": "wids-shard-index-v1", "wids_version": 1, "name": "curate",
            "shardlist": [{"url": s["url"], "nsamples": s["nsamples"]} for s in shards]}
