"""The Hugging Face Hub, through huggingface_hub: list a dataset's files, download one, commit many.

huggingface_hub reads HF_TOKEN, HF_ENDPOINT, HF_HUB_OFFLINE and HF_HOME / HF_HUB_CACHE itself.
Downloads resume after a dropped connection inside the client (HTTP Range); on top of that a
server error (5xx, 429) or a connection failure is retried here with backoff, and a finished file
whose size differs from the listing is downloaded again once. Nothing is imported at module level:
`curate status` never pays for the hub client.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from pathlib import Path

from .errors import CurateError

REPO_TYPE = "dataset"
ATTEMPTS = 5


@dataclass(frozen=True)
class HubFile:
    path: str
    size: int
    sha256: str | None = None  # LFS files only
    blob_id: str | None = None  # git object id (what the Hub lists for files not in LFS)


def _transient(exc: BaseException) -> bool:
    from huggingface_hub.errors import HfHubHTTPError

    if isinstance(exc, HfHubHTTPError):
        status = getattr(exc.response, "status_code", None)
        return status is None or status >= 500 or status == 429
    return isinstance(exc, (ConnectionError, TimeoutError)) or type(exc).__name__ in (
        "ConnectError", "ReadTimeout", "RemoteProtocolError", "ReadError")


def retried(call, *args, **kwargs):
    """`call(*args, **kwargs)`, retried on transient hub errors with exponential backoff."""
    from tenacity import retry, retry_if_exception, stop_after_attempt, wait_exponential

    wrapped = retry(retry=retry_if_exception(_transient), stop=stop_after_attempt(ATTEMPTS),
                    wait=wait_exponential(multiplier=0.5, max=20), reraise=True)(call)
    return wrapped(*args, **kwargs)


def explain(exc: BaseException, what: str) -> CurateError:
    """A hub failure as one line that says what to do."""
    status = getattr(getattr(exc, "response", None), "status_code", None)
    hint = {401: "set HF_TOKEN to a token that can read it", 403: "your HF_TOKEN has no access to it",
            404: "check the repo id, revision and path (a private repo also answers 404 without a token)"}
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return CurateError(f"{what}: {text}" + (f" ({hint[status]})" if status in hint else ""))


def list_files(repo: str, revision: str = "main", pattern: str | None = None,
               paths: list[str] | None = None) -> list[HubFile]:
    """The dataset's files (recursive), those matching `pattern` (glob on the path) or named in `paths`."""
    from huggingface_hub import HfApi, RepoFile

    try:
        entries = retried(lambda: list(HfApi().list_repo_tree(repo, recursive=True, revision=revision,
                                                              repo_type=REPO_TYPE)))
    except Exception as exc:
        raise explain(exc, f"listing dataset {repo}@{revision}") from None
    files = [HubFile(e.path, int(e.size), e.lfs.sha256 if e.lfs else None, e.blob_id)
             for e in entries if isinstance(e, RepoFile)]
    if paths:
        found = {f.path: f for f in files}
        missing = [p for p in paths if p not in found]
        if missing:
            raise CurateError(f"dataset {repo}@{revision} has no file {missing[0]}"
                              + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
                              + "; `curate shards --repo` lists what it has")
        return [found[p] for p in paths]
    if pattern:
        files = [f for f in files if fnmatch.fnmatch(f.path, pattern) or fnmatch.fnmatch(Path(f.path).name, pattern)]
    return sorted(files, key=lambda f: f.path)


def offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def cached_files(repo: str, revision: str, paths: list[str]) -> list[HubFile]:
    """With HF_HUB_OFFLINE=1 nothing can be listed: the listed shards, as the HF cache holds them."""
    if not paths:
        raise CurateError(f"HF_HUB_OFFLINE=1: the files of {repo} cannot be listed; name them in input.shards or "
                          "input.shards_file (they must be in the HF cache)")
    files = []
    for path in paths:
        local = cached(repo, revision, path)
        if local is None:
            raise CurateError(f"HF_HUB_OFFLINE=1 and {path} of {repo}@{revision} is not in the HF cache "
                              "(HF_HOME); download it once online, or unset HF_HUB_OFFLINE")
        files.append(HubFile(path, local.stat().st_size))
    return files


def cached(repo: str, revision: str, path: str) -> Path | None:
    """The file from the local HF cache, if it is there (never deleted by curate)."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo, path, revision=revision, repo_type=REPO_TYPE)
    return Path(found) if isinstance(found, str) else None


def download(repo: str, revision: str, path: str, dest_dir: Path, size: int | None = None) -> Path:
    """Download one file of the dataset under dest_dir (resumable: a partial file is continued)."""
    from huggingface_hub import hf_hub_download

    target = None
    for attempt in range(2):
        try:
            target = Path(retried(hf_hub_download, repo, path, repo_type=REPO_TYPE, revision=revision,
                                  local_dir=dest_dir, force_download=attempt > 0))
        except Exception as exc:
            raise explain(exc, f"downloading {path} from {repo}@{revision}") from None
        if not size or target.stat().st_size == size:
            return target
    raise CurateError(f"{path} from {repo}@{revision}: {target.stat().st_size} bytes downloaded twice, "
                      f"the listing says {size}")
