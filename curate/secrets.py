"""One scrubber for everything curate writes: markers, logs, run.yaml, sbatch scripts.

Secrets are read from the environment only. Any record we write passes through `scrub`, which
replaces the value of every secret variable that is set with a placeholder naming the variable.
"""

from __future__ import annotations

import os

# Environment variables that may hold secrets; a config that names another one (e.g.
# caption.api_key_env) adds it with `register` when it is validated.
SECRET_ENV_VARS = ["HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "OPENROUTER_API_KEY", "OPENAI_API_KEY"]
MIN_SECRET_LEN = 6  # shorter values would scrub ordinary words


def register(name: str | None) -> None:
    if name and name not in SECRET_ENV_VARS:
        SECRET_ENV_VARS.append(name)


def scrub(text: str) -> str:
    for name in SECRET_ENV_VARS:
        value = os.environ.get(name, "")
        if len(value) >= MIN_SECRET_LEN and value in text:
            text = text.replace(value, f"<${name}>")
    return text
