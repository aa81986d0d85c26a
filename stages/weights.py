"""Where a model's weights come from: a path, or a file of a Hugging Face repo via the HF cache.

`hf_hub_download` honours HF_HUB_OFFLINE, HF_HOME / HF_HUB_CACHE, HF_ENDPOINT and HF_TOKEN, so on
a compute node without internet a file that was downloaded once (`hf download REPO FILE`) is
found in the shared cache. A missing file stops the task before any work, naming the file and
how to get it.
"""

from __future__ import annotations

from pathlib import Path

from curate.errors import CurateError
from curate.sections import Section


class WeightsRef(Section):
    path: str | None = None  # a local file (wins over hf_repo)
    hf_repo: str | None = None  # e.g. timm/vit_large_patch14_clip_224.openai
    filename: str | None = None  # a file of that repo
    revision: str | None = None

    def describe(self) -> str:
        if self.path:
            return self.path
        if self.hf_repo and self.filename:
            return f"hf://{self.hf_repo}/{self.filename}" + (f"@{self.revision}" if self.revision else "")
        return "(not configured)"

    def locate(self) -> tuple[Path | None, str]:
        """Without downloading: the local file if it is there, and a word on where it was looked for."""
        if self.path:
            path = Path(self.path).expanduser()
            return (path, "found") if path.is_file() else (None, f"no file {path}")
        if self.hf_repo and self.filename:
            from huggingface_hub import try_to_load_from_cache

            cached = try_to_load_from_cache(self.hf_repo, self.filename, revision=self.revision)
            if isinstance(cached, str):
                return Path(cached), "in the HF cache"
            return None, "not in the HF cache"
        return None, "not configured"

    def resolve(self, key: str, how: str) -> Path:
        """The local file of these weights; CurateError (with `how` to obtain them) when there is none."""
        if self.path:
            path = Path(self.path).expanduser()
            if not path.is_file():
                raise CurateError(f"{key}.path: weights file {path} does not exist; {how}")
            return path
        if self.hf_repo and self.filename:
            from huggingface_hub import hf_hub_download

            try:
                return Path(hf_hub_download(self.hf_repo, self.filename, revision=self.revision))
            except Exception as exc:  # offline and not cached, gated, no such file, no network
                detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
                raise CurateError(
                    f"{key}: cannot get {self.filename} from the Hugging Face repo {self.hf_repo} ({detail}). "
                    f"On a machine with internet run `hf download {self.hf_repo} {self.filename}` into the "
                    f"HF cache the nodes share (HF_HOME), or set {key}.path to a local copy; {how}") from None
        raise CurateError(f"{key}: no weights configured: set {key}.path, or {key}.hf_repo and "
                          f"{key}.filename; {how}")


def load_state_dict(path: Path, key: str):
    """A torch state dict from a .pth/.bin/.safetensors file (tensors only, no pickled code)."""
    import torch

    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CurateError(f"{key}: {path} is not a readable weights file: {type(exc).__name__}: {exc}") from None
    for wrapper in ("state_dict", "model", "module"):  # checkpoints often nest the weights
        if isinstance(state, dict) and wrapper in state and isinstance(state[wrapper], dict):
            state = state[wrapper]
    if not isinstance(state, dict):
        raise CurateError(f"{key}: {path} holds a {type(state).__name__}, not a state dict of tensors")
    return state


def load_into(module, state: dict, path: Path, key: str, how: str) -> None:
    """load_state_dict(strict) with an error that names the first mismatched keys and shapes."""
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}" for k in own
             if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or wrong:
        parts = []
        for label, items in (("wrong shapes", wrong), ("missing keys", missing), ("unexpected keys", unexpected)):
            if items:
                parts.append(f"{label} ({len(items)}): {', '.join(items[:4])}{' ...' if len(items) > 4 else ''}")
        raise CurateError(f"{key}: {path} does not match the model: {'; '.join(parts)}; {how}")
    module.load_state_dict(state)
