"""The rich views of the commands: progress bars, summaries, the status table, reports."""

from __future__ import annotations

import json

from ..arrayspec import compact
from .app import _console


class local_progress:
    """A rich progress bar per stage, fed by the executor's start/done/failed events."""

    def __init__(self, plan, enabled: bool):
        self.plan, self.enabled = plan, enabled

    def __enter__(self):
        if not self.enabled:
            return None
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.bar = Progress(TextColumn("{task.description:>8}"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("{task.fields[note]}"), TimeElapsedColumn(), console=_console(True))
        self.tasks = {s: self.bar.add_task(s, total=self.plan.num_parts, note="") for s in self.plan.stages}
        self.failed = {s: 0 for s in self.plan.stages}
        self.bar.start()
        return self.event

    def event(self, stage: str, index: int, kind: str) -> None:
        if kind == "done":
            self.bar.advance(self.tasks[stage])
        elif kind == "failed":
            self.failed[stage] += 1
            self.bar.update(self.tasks[stage], note=f"[red]{self.failed[stage]} failed[/]")

    def __exit__(self, *exc):
        if self.enabled:
            self.bar.stop()
        return False


class clip_progress:
    """A progress bar for writing the kept clips' files at export."""

    def __init__(self, enabled: bool):
        self.enabled, self.bar = enabled, None

    def __enter__(self):
        return self.update if self.enabled else None

    def update(self, done: int, total: int) -> None:
        if self.bar is None:
            from rich.progress import Progress

            self.bar = Progress(console=_console(True))
            self.task = self.bar.add_task("clips", total=total)
            self.bar.start()
        self.bar.update(self.task, completed=done)

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.stop()
        return False


def print_failures(failed: dict[int, str]) -> None:
    console = _console(stderr=True)
    for index, why in sorted(failed.items()):
        console.print(f"[red]index {index} failed[/] at {why}")


def print_summary(doc: dict) -> None:
    console = _console()
    console.print(f"[bold green]final table[/] {doc['table']}")
    console.print(f"{doc.get('rows', 0)} rows from {doc.get('videos', 0)} videos: {doc.get('clips_ok', 0)} clips "
                  f"({doc.get('clip_hours', 0) * 60:.1f} min); by status {doc.get('by_status', {})}")
    if doc.get("uploaded_to"):
        console.print(f"[bold green]uploaded[/] kept clips and metadata to {doc['uploaded_to']}")


def eta_text(seconds: int | None, wide: bool = False) -> str:
    """An ETA in at most 6 characters (3d04h, 27h47m, 12m05s, 45s), or h/m/s in full with `wide`."""
    if not seconds:
        return "-"
    days, rest = divmod(int(seconds), 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if wide:
        return (f"{days}d" if days else "") + f"{hours:02d}h{minutes:02d}m{secs:02d}s"
    if days:
        return f"{days}d{hours:02d}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


FAILED_LINES = 20  # failure reasons listed under the table per stage (--wide: all)
# The state columns' headers, two lines at most so that the table fits 80 columns up to 99,999 indices.
_HEADERS = {"not_started": "not\nstarted"}


def status_table(doc: dict, wide: bool = False):
    """The status table: fits 80 columns (--wide adds the mean task, the workers and the ETA in full)."""
    from rich import box
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    from ..status import STATES

    table = Table(title=f"{doc['workdir']} ({doc['num_parts']} indices)", box=box.SIMPLE_HEAD, show_edge=False,
                  pad_edge=False, collapse_padding=True)
    table.add_column("stage", no_wrap=True)
    for state in STATES:
        table.add_column(_HEADERS.get(state, state), justify="right", no_wrap=True)
    if wide:
        table.add_column("mean\ntask s", justify="right", no_wrap=True)
        table.add_column("work-\ners", justify="right", no_wrap=True)
    table.add_column("per h", justify="right", no_wrap=True)
    table.add_column("ETA", justify="right", no_wrap=True)
    lines = []
    for stage, s in doc["stages"].items():
        cells = [str(len(s[state])) for state in STATES]
        if wide:
            cells += [f"{s['mean_task_s']:.1f}" if s.get("mean_task_s") else "-", str(s.get("workers") or "-")]
        per_hour = s.get("tasks_per_hour")
        table.add_row(stage, *cells, f"{per_hour:.0f}" if per_hour else "-", eta_text(s.get("eta_s"), wide))
        failed = list(s["failed"].items())
        for index, reason in failed if wide else failed[:FAILED_LINES]:
            lines.append(Text.assemble((f"{stage}[{index}] ", "red"), reason))
        if len(failed) > FAILED_LINES and not wide:
            lines.append(Text(f"{stage}: {len(failed) - FAILED_LINES} more failed (--wide or --json lists them)",
                              "red"))
        if s["blocked"]:
            lines.append(Text(f"{stage} blocked by a failed earlier stage: {compact(s['blocked'])}", "yellow"))
    merge = doc.get("merge")
    if merge:
        where = f": {merge['table']}" if merge["state"] == "done" and merge["table"] else ""
        why = f" ({merge['reason']})" if merge.get("reason") and merge["state"] != "done" else ""
        lines.append(Text(f"final table (job {merge['job_id']}): {merge['state']}{why}{where}",
                          "red" if merge["state"] == "failed" else ""))
    lines += [Text(line) for line in doc.get("progress_lines", {}).values()]  # each stage words its own
    if doc.get("note"):
        lines.append(Text(doc["note"], "dim"))
    return Group(table, *lines)


def report_submission(sub, as_json: bool, dry_run: bool) -> None:
    doc = sub.to_json()
    if as_json:
        print(json.dumps(doc))
        return
    if sub.already_done:
        _console(stderr=True).print(f"left out {sub.already_done} indices already done in every stage submitted")
    if not sub.stages:
        _console(stderr=True).print("every index is already done: nothing submitted")
        return
    if dry_run:
        return
    console = _console()
    for stage, chunks in sub.stages.items():
        for chunk in chunks:
            console.print(f"{stage:>8}: job {chunk.job_id} array {chunk.array} (indices {compact(chunk.indices)})")
    console.print(f"submission {sub.id}; watch with `curate status --workdir ... --watch`")


def print_publish_report(doc: dict, report) -> None:
    console = _console()
    console.print(f"[bold green]output[/] {doc['output_dir']}: {report.written} files written ({doc['copy_mode']}), "
                  f"{report.skipped} already there, {report.failed} failed; metadata.parquet, curation/clips.parquet, "
                  "README.md")
    for note in report.notes[:10]:
        console.print(f"[yellow]note[/]: {note}")


def print_shards(repo: str, revision: str, files: list, total: int) -> None:
    from rich.table import Table

    table = Table(title=f"{repo}@{revision}: {len(files)} files, {total / 1e9:.2f} GB")
    table.add_column("path", overflow="fold")
    table.add_column("bytes", justify="right")
    for f in files:
        table.add_row(f.path, f"{f.size:,}")
    _console().print(table)


def print_models(rows: list[dict], missing: list[str]) -> None:
    from rich.table import Table

    table = Table(title="models (weights looked for where shown; HF files in the HF cache, HF_HOME)")
    for column in ("model", "enabled", "found", "weights"):
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(row["model"], "yes" if row["enabled"] else "no",
                      "[green]yes[/]" if row["found"] else "[red]no[/]", f"{row['weights']} ({row['where']})")
    _console().print(table)
    for row in rows:
        if row.get("loads") not in (None, "ok"):
            _console(stderr=True).print(f"[red]{row['model']} does not load[/]: {row['loads']}")
    if missing:
        _console(stderr=True).print(f"[red]enabled models without usable weights[/]: {', '.join(missing)}")
