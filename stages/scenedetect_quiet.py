"""PySceneDetect, imported without the ffmpeg process it starts at import.

`import scenedetect` runs `ffmpeg -v quiet` once, to find an ffmpeg for its own video splitting,
which curate never calls (clips are cut by curate/clipfile.py). That process cost every split task
60-150 ms before its first frame. With no directory to search while the import runs, the lookup
fails at once and scenedetect records "no ffmpeg"; the real PATH is back before anything else runs.

Import this module before any thread of the task may start a process (SplitStage.run does, before
its video threads): for the moment of the import, a process started elsewhere would find no
program either.
"""

from __future__ import annotations

import os


def _quiet_import():
    path = os.environ.get("PATH")
    os.environ["PATH"] = os.devnull  # a file, not a directory: every lookup fails at once
    try:
        import scenedetect
    finally:
        if path is None:
            del os.environ["PATH"]
        else:
            os.environ["PATH"] = path
    return scenedetect


scenedetect = _quiet_import()
