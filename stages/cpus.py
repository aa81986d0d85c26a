"""How many CPU threads one task may use: its share of the node, not every core the libraries see.

Two local workers on 2 cores, or a Slurm task with 4 CPUs on a 64-core node: the decoder, OpenCV and
the onnxruntime sessions would each start a thread per core they find and take turns on the few they
have. The local executor gives each task `CURATE_THREADS` (its cores / workers); under Slurm the
task's `SLURM_CPUS_PER_TASK` says it.
"""

from __future__ import annotations

import os
from contextlib import contextmanager

BUDGET_VARIABLES = ("CURATE_THREADS", "SLURM_CPUS_PER_TASK")  # where a task's thread budget is set, first wins


def task_threads() -> int:
    """The task's thread budget; 0 where none is set (the libraries choose)."""
    for name in BUDGET_VARIABLES:
        value = os.environ.get(name, "").strip()
        if value.isdigit() and int(value) > 0:
            return int(value)
    return 0


def decoder_threads(budget: int) -> int:
    """FFmpeg decoder threads for a task whose budget is `budget` threads (0: FFmpeg's choice). With
    frame threads each thread holds one frame in flight, so the decoder can run only that many
    frames ahead of the consumers; two more than the budget let it keep decoding while a consumer
    works on a slow frame (a sampled one: a hash, a quality measure, a JPEG), instead of idling
    until the consumer asks again. Split took 0-10 % less time with 4 threads than with 2 on 2 cores,
    the frames bit for bit the same. At most 16 unless the budget itself is more (FFmpeg advises
    against more frame threads than that)."""
    return min(budget + 2, max(budget, 16)) if budget >= 2 else budget


def task_cores() -> int:
    """The cores this task may divide among its own workers: its budget, else every CPU it may run on."""
    return task_threads() or len(os.sched_getaffinity(0))


_OPENCV_THREADS: list[int] = []
_OPENCV_SHARE: list[int] = []  # while set (`opencv_share`): the threads limit_opencv() gives


def limit_opencv() -> None:
    """OpenCV's own thread pool within the task's budget: it starts a thread per core it sees, so two
    local workers (or a 4-CPU Slurm task on a 64-core node) would each resize on all of them."""
    threads = _OPENCV_SHARE[0] if _OPENCV_SHARE else task_cores()
    if _OPENCV_THREADS != [threads]:
        import cv2

        cv2.setNumThreads(threads)
        _OPENCV_THREADS[:] = [threads]


@contextmanager
def opencv_share(threads: int):
    """OpenCV on `threads` inside the block, the task's budget again after it: for work that already
    runs on threads of its own, one per core (split's videos at once), where an idle pool thread
    would wait by spinning on sched_yield (a tenth of a core of split here)."""
    _OPENCV_SHARE[:] = [max(1, threads)]
    try:
        limit_opencv()
        yield
    finally:
        _OPENCV_SHARE.clear()
        limit_opencv()


def no_spinning(options):
    """Session options whose idle threads sleep instead of spinning: between the many short runs of a
    filter task (an image or a batch each, the other model's in between) spinning threads burn a
    core; without them the same filter task took 0.2-0.4 s less and a fifth less CPU here."""
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def runs_at_once(device: str) -> int:
    """How many runs of a small model a task makes at once, each on one thread: on the CPU one per core
    of its budget (a detector's small layers leave the second thread of one run half idle: OCR
    detection of 86 frames took 0.9 s so against 1.3 s on 2 cores), on a GPU one."""
    return task_cores() if device == "cpu" else 1


def concurrently(function, items: list, at_once: int, name: str) -> list:
    """`function` over the items, `at_once` of them at a time on threads of their own (results in
    order); one by one on this thread when `at_once` < 2 or there is a single item."""
    at_once = min(at_once, len(items))
    if at_once < 2:
        return [function(item) for item in items]
    from concurrent.futures import ThreadPoolExecutor

    pool = ThreadPoolExecutor(at_once, thread_name_prefix=name)
    try:
        results = list(pool.map(function, items))
    except BaseException as exc:
        from curate.faults import stopped_by_signal

        # The items not started are dropped either way. After an error the running ones are waited
        # for (nothing of this task outlives it); after a signal (TaskInterrupted, Ctrl-C, or an error
        # that followed one) they are not: the task must release its claim and stop now, not once its
        # current videos are done.
        pool.shutdown(wait=isinstance(exc, Exception) and stopped_by_signal(exc) is None, cancel_futures=True)
        raise
    pool.shutdown()
    return results


def with_threads(options, threads: int):
    """Session options that run on `threads` (0: onnxruntime's choice), without spinning."""
    if threads:
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    return no_spinning(options)


def onnx_options(threads: int | None = None):
    """onnxruntime CPU session options: `threads` per run (default: the task's budget, when one is
    set), no spinning."""
    import onnxruntime

    limit_opencv()  # the models' pre- and post-processing is OpenCV's
    return with_threads(onnxruntime.SessionOptions(), task_threads() if threads is None else threads)
