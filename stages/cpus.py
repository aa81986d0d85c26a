"""How many CPU threads one task may use: its share of the node, not every core the libraries see.

Two local workers on 2 cores, or a Slurm task with 4 CPUs on a 64-core node: the decoder and the
onnxruntime sessions would each start a thread per core they find and take turns on the few they
have. The local executor gives each task `CURATE_THREADS` (its cores / workers); under Slurm the
task's `SLURM_CPUS_PER_TASK` says it.
"""

from __future__ import annotations

import os


def task_threads() -> int:
    """The task's thread budget; 0 where none is set (the libraries choose)."""
    for name in ("CURATE_THREADS", "SLURM_CPUS_PER_TASK"):
        value = os.environ.get(name, "").strip()
        if value.isdigit() and int(value) > 0:
            return int(value)
    return 0


def task_cores() -> int:
    """The cores this task may divide among its own workers: its budget, else every CPU it may run on."""
    return task_threads() or len(os.sched_getaffinity(0))


def onnx_options():
    """onnxruntime session options within the budget (None: its defaults)."""
    threads = task_threads()
    if not threads:
        return None
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return options
