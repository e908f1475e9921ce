"""Fetch a base model from Hugging Face (or ModelScope) in a detached worker that reports progress.

``start_download`` writes a job file ``.wizard/downloads/<id>.json`` and starts
``python -m engine.download JOB`` in its own session (it survives the terminal, like a training
run). The worker, all the network work in one process:

1. asks the hub for the repo's files and sizes (``HfApi.model_info(files_metadata=True)``); a hub
   that can't be reached, a missing repo or revision is one line with the fix;
2. checks the free disk of the cache against what is still to fetch;
3. downloads with huggingface_hub's own ``snapshot_download`` into its cache (the layout every
   tool reads: ``models--ORG--NAME/snapshots/REV/``), retrying a dropped link: the hub's
   downloader keeps ``blobs/<etag>.incomplete`` and asks for the rest with a ``Range`` header, so
   nothing already fetched is fetched again (also after a killed worker: run it again);
4. while it runs, rewrites the job file twice a second with bytes done (read from the blobs on
   disk), rate and ETA.

Readers (``xtuner-wizard model get``, a screen) only read the job file: :func:`read_job`.
ModelScope's ``snapshot_download`` is used the same way when its package is installed
(``pip install -e .[modelscope]``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING

from engine.errors import WizardError
from engine.workspace import atomic_write

if TYPE_CHECKING:
    from engine.workspace import Workspace

SOURCES = ("hf", "modelscope")
HF_DEFAULT_ENDPOINT = "https://huggingface.co"
POLL_S = 0.5
RETRIES = 5  # dropped links in a row before giving up (the hub's downloader resumes each)
ACTIVE = ("starting", "checking", "downloading", "retrying")
MARGIN = 256 * 1024**2  # free space to leave beside the model


@dataclass
class DownloadJob:
    """What a download is doing: written by the worker, read by the CLI and the wizard."""

    id: str
    path: str  # this job file
    repo_id: str
    source: str = "hf"
    revision: str = "main"
    cache_dir: str = ""
    endpoint: str = ""
    state: str = "starting"  # starting|checking|downloading|retrying|done|failed
    pid: int | None = None
    pid_started: float | None = None  # the worker's start time (pid reuse)
    started: float = 0.0
    updated: float = 0.0
    commit: str | None = None
    files_total: int = 0
    files_done: int = 0
    bytes_total: int = 0
    bytes_done: int = 0
    bytes_at_start: int = 0  # already on disk when this worker started (a resumed download)
    rate: float = 0.0  # bytes/s, smoothed
    eta: float | None = None  # seconds
    attempts: int = 0
    model_dir: str | None = None  # the finished snapshot folder
    error: str | None = None
    fix: str | None = None
    log: str = ""
    history: list[str] = field(default_factory=list)  # retries, resumes: one line each

    @property
    def active(self) -> bool:
        return self.state in ACTIVE

    def save(self) -> None:
        self.updated = time.time()
        atomic_write(Path(self.path), json.dumps(asdict(self), indent=2, ensure_ascii=False))

    def describe(self) -> str:
        """One line: bytes, rate, ETA (or the outcome)."""
        from engine.config.estimate import format_duration
        from engine.envcheck import human_bytes

        if self.state == "done":
            return f"done: {self.repo_id} -> {self.model_dir}"
        if self.state == "failed":
            return f"failed: {self.error}" + (f" (fix: {self.fix})" if self.fix else "")
        if self.state in ("starting", "checking"):
            return f"{self.repo_id}: asking the hub for the files…"
        pct = 100 * self.bytes_done / self.bytes_total if self.bytes_total else 0
        eta = f", ETA {format_duration(self.eta)}" if self.eta is not None else ""
        retry = (
            f" (link dropped, resuming: attempt {self.attempts})"
            if self.state == "retrying"
            else ""
        )
        return (
            f"{self.repo_id}: {human_bytes(self.bytes_done)} / {human_bytes(self.bytes_total)} "
            f"({pct:.0f}%), {self.files_done}/{self.files_total} files, "
            f"{human_bytes(self.rate)}/s{eta}{retry}"
        )


def downloads_dir(ws: Workspace) -> Path:
    return ws.wizard_dir / "downloads"


def job_id(repo_id: str, source: str) -> str:
    return f"{source}--{re.sub(r'[^A-Za-z0-9._-]+', '--', repo_id)}"


def read_job(path: Path | str) -> DownloadJob:
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    known = {f.name for f in fields(DownloadJob)}
    return DownloadJob(**{k: v for k, v in data.items() if k in known})


def worker_alive(job: DownloadJob) -> bool:
    """Whether the job's worker process still runs (pid and start time both match)."""
    if not job.pid:
        return False
    try:
        import psutil

        proc = psutil.Process(job.pid)
        if job.pid_started is not None and abs(proc.create_time() - job.pid_started) > 1.0:
            return False
        return proc.status() != psutil.STATUS_ZOMBIE
    except Exception:
        return False


def current_job(ws: Workspace, repo_id: str, source: str = "hf") -> DownloadJob | None:
    """The job file of this repo, its state corrected when its worker died without a word."""
    path = downloads_dir(ws) / f"{job_id(repo_id, source)}.json"
    try:
        job = read_job(path)
    except (OSError, ValueError, TypeError):
        return None
    # (a worker that has not written its pid yet gets a minute to start)
    if job.active and not worker_alive(job) and (job.pid or time.time() - job.started > 60):
        job.state = "failed"
        job.error = "the download stopped (its worker was killed)"
        job.fix = f"run `xtuner-wizard model get {repo_id}` again: it resumes where it stopped"
    return job


def list_jobs(ws: Workspace) -> list[DownloadJob]:
    jobs = []
    for path in sorted(downloads_dir(ws).glob("*.json")):
        try:
            job = read_job(path)
        except (OSError, ValueError, TypeError):
            continue
        jobs.append(current_job(ws, job.repo_id, job.source) or job)
    return jobs


def default_cache_dir(source: str) -> Path:
    from engine.models import SearchRoots

    if source == "modelscope":
        return SearchRoots.from_env().modelscope[0]
    hub = SearchRoots.from_env().hf_hub
    assert hub is not None
    return hub


def check_repo_id(repo_id: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9][\w.-]*/[\w.-]+", repo_id or "") or ".." in repo_id:
        raise WizardError(
            f"{repo_id!r} is not a model id",
            where="model get",
            fix="give ORG/NAME as the hub shows it, e.g. internlm/internlm2-chat-1_8b",
        )
    return repo_id


def start_download(
    ws: Workspace,
    repo_id: str,
    *,
    source: str = "hf",
    revision: str | None = None,
    cache_dir: Path | None = None,
) -> DownloadJob:
    """Start the detached worker for ``repo_id`` (or return the one already running)."""
    check_repo_id(repo_id)
    if source not in SOURCES:
        raise WizardError(
            f"unknown source {source!r}", where="--source", fix="use hf or modelscope"
        )
    if source == "modelscope" and not _modelscope_installed():
        raise WizardError(
            "ModelScope's package is not installed",
            where="--source modelscope",
            fix="pip install modelscope (or pip install -e .[modelscope]), or use --source hf",
        )
    ws.ensure()
    running = current_job(ws, repo_id, source)
    if running is not None and running.active and worker_alive(running):
        return running
    folder = downloads_dir(ws)
    folder.mkdir(parents=True, exist_ok=True)
    jid = job_id(repo_id, source)
    job = DownloadJob(
        id=jid,
        path=str(folder / f"{jid}.json"),
        repo_id=repo_id,
        source=source,
        revision=revision or "main",
        cache_dir=str(cache_dir or default_cache_dir(source)),
        endpoint=os.environ.get("HF_ENDPOINT", HF_DEFAULT_ENDPOINT).rstrip("/"),
        started=time.time(),
        log=str(folder / f"{jid}.log"),
    )
    job.save()
    from engine.xtuner_env import child_env

    env = child_env(extra={"HF_HUB_OFFLINE": "0", "HF_HUB_DISABLE_PROGRESS_BARS": "1"})
    env.pop("TRANSFORMERS_OFFLINE", None)
    with open(job.log, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "engine.download", job.path],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
            close_fds=True,
        )
    job.pid = proc.pid  # the worker writes its pid and start time itself, first thing
    return job


def wait_job(
    ws: Workspace, job: DownloadJob, *, until: tuple[str, ...] = ("done", "failed"), timeout: float
) -> DownloadJob:
    """Poll the job file until its state is one of ``until`` or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while True:
        now = current_job(ws, job.repo_id, job.source) or job
        if now.state in until or time.monotonic() >= deadline:
            return now
        time.sleep(0.2)


def _modelscope_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("modelscope") is not None


# --- the worker ------------------------------------------------------------------------------
UNREACHABLE_FIX = (
    "copy the model folder to this machine (e.g. scp -r internlm2-chat-1_8b HOST:~/models/) and "
    "point the wizard at it with --model DIR; or set HF_ENDPOINT to a mirror you can reach"
)


@dataclass
class _File:
    name: str
    size: int
    blob: str  # the cache's blob name: the LFS sha256, else the git blob id


class _Progress:
    """Bytes done, read from the cache's blobs (whole or ``.incomplete``) twice a second."""

    def __init__(self, job: DownloadJob, files: list[_File], blobs: Path) -> None:
        self.job, self.files, self.blobs = job, files, blobs
        self._stop = threading.Event()
        self._last: tuple[float, int] | None = None
        self._lock = threading.Lock()

    def measure(self) -> tuple[int, int]:
        done_bytes = done_files = 0
        for f in self.files:
            blob = self.blobs / f.blob
            if blob.is_file():
                done_bytes += f.size
                done_files += 1
                continue
            try:
                done_bytes += min(f.size, (self.blobs / (f.blob + ".incomplete")).stat().st_size)
            except OSError:
                pass
        return done_bytes, done_files

    def update(self) -> None:
        with self._lock:
            job = self.job
            job.bytes_done, job.files_done = self.measure()
            now = time.monotonic()
            if self._last is not None:
                dt = now - self._last[0]
                if dt > 0:
                    rate = max(0, job.bytes_done - self._last[1]) / dt
                    job.rate = rate if job.rate == 0 else 0.7 * job.rate + 0.3 * rate
            self._last = (now, job.bytes_done)
            left = job.bytes_total - job.bytes_done
            job.eta = left / job.rate if job.rate > 0 else None
            job.save()

    def run(self) -> None:
        while not self._stop.wait(POLL_S):
            try:
                self.update()
            except OSError:
                pass

    def __enter__(self) -> _Progress:
        self._last = (time.monotonic(), self.job.bytes_done)  # the rate counts new bytes only
        self._thread = threading.Thread(target=self.run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.update()


def _fail(job: DownloadJob, error: str, fix: str | None = None) -> int:
    job.state, job.error, job.fix = "failed", error, fix
    job.save()
    print(f"failed: {error}", flush=True)
    return 2


def _free_bytes(folder: Path) -> int:
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return shutil.disk_usage(probe).free


def _check_disk(job: DownloadJob, cache: Path) -> None:
    from engine.envcheck import human_bytes

    need = job.bytes_total - job.bytes_done
    free = _free_bytes(cache)
    if need + MARGIN > free:
        raise WizardError(
            f"not enough disk for {job.repo_id}: {human_bytes(need)} still to fetch, "
            f"{human_bytes(free)} free",
            where=str(cache),
            fix="free some space, or point HF_HUB_CACHE (or HF_HOME) at a bigger disk",
        )


def _hf_files(job: DownloadJob) -> list[_File]:
    """The repo's files from the hub (step 1); raises WizardError with the fix."""
    import requests
    from huggingface_hub import HfApi
    from huggingface_hub.utils import (
        GatedRepoError,
        HfHubHTTPError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    api = HfApi(endpoint=job.endpoint)
    try:
        info = api.model_info(job.repo_id, revision=job.revision, files_metadata=True, timeout=20)
    except GatedRepoError:
        raise WizardError(
            f"{job.repo_id} is gated: accept its licence on the hub first",
            where=job.endpoint,
            fix="accept the licence on the model's page, then `huggingface-cli login` (or HF_TOKEN)",
        ) from None
    except RepositoryNotFoundError:
        raise WizardError(
            f"no model {job.repo_id} on the hub (or it is private)",
            where=job.endpoint,
            fix="check the id on the hub's page; for a private model `huggingface-cli login`",
        ) from None
    except RevisionNotFoundError:
        raise WizardError(
            f"{job.repo_id} has no revision {job.revision!r}",
            where="--revision",
            fix="use a branch, tag or commit the model's page lists (default main)",
        ) from None
    except (requests.ConnectionError, requests.Timeout, OfflineModeIsEnabled) as exc:
        raise WizardError(
            f"the hub can't be reached ({job.endpoint}): {type(exc).__name__}",
            where="model get",
            fix=UNREACHABLE_FIX,
        ) from None
    except HfHubHTTPError as exc:
        raise WizardError(
            f"the hub answered {exc.response.status_code if exc.response is not None else '?'}",
            where=job.endpoint,
            fix="try again later",
        ) from None
    job.commit = info.sha
    files = []
    for s in info.siblings or []:
        blob = s.lfs.sha256 if s.lfs is not None else s.blob_id
        files.append(
            _File(s.rfilename, int(s.size or (s.lfs.size if s.lfs else 0) or 0), blob or "")
        )
    return files


def _is_dropped_link(exc: BaseException) -> bool:
    import requests

    return isinstance(
        exc,
        (
            requests.ConnectionError,
            requests.Timeout,
            requests.exceptions.ChunkedEncodingError,
            ConnectionError,
            TimeoutError,
        ),
    ) or "Consistency check failed" in str(exc)


def _download_hf(job: DownloadJob) -> int:
    from huggingface_hub import snapshot_download

    cache = Path(job.cache_dir)
    job.state = "checking"
    job.save()
    try:
        files = _hf_files(job)
    except WizardError as exc:
        return _fail(job, exc.message, exc.fix)
    repo_dir = cache / ("models--" + job.repo_id.replace("/", "--"))
    progress = _Progress(job, [f for f in files if f.blob], repo_dir / "blobs")
    job.files_total = len(files)
    job.bytes_total = sum(f.size for f in files)
    job.bytes_done, job.files_done = progress.measure()
    job.bytes_at_start = job.bytes_done
    if job.bytes_done:
        job.history.append(f"resuming: {job.bytes_done} bytes already in the cache")
    try:
        _check_disk(job, cache)
    except WizardError as exc:
        return _fail(job, exc.message, exc.fix)
    job.state = "downloading"
    job.save()
    delay = 1.0
    with progress:
        while True:
            job.attempts += 1
            try:
                path = snapshot_download(
                    job.repo_id,
                    revision=job.revision,
                    cache_dir=str(cache),
                    endpoint=job.endpoint,
                    max_workers=4,
                )
                break
            except Exception as exc:
                if not _is_dropped_link(exc) or job.attempts > RETRIES:
                    fix = (
                        f"run `xtuner-wizard model get {job.repo_id}` again: it resumes"
                        if _is_dropped_link(exc)
                        else None
                    )
                    return _fail(job, f"{type(exc).__name__}: {str(exc)[:300]}", fix)
                job.state = "retrying"
                job.history.append(
                    f"attempt {job.attempts}: {type(exc).__name__}; resuming in {delay:.0f} s"
                )
                job.save()
                time.sleep(delay)  # a dropped link: give it a moment, then resume
                delay = min(delay * 2, 30)
                job.state = "downloading"
    job.model_dir = str(path)
    job.state = "done"
    job.eta = 0.0
    job.save()
    print(f"done: {path}", flush=True)
    return 0


def _download_modelscope(job: DownloadJob) -> int:  # pragma: no cover - needs modelscope
    from modelscope import snapshot_download
    from modelscope.hub.api import HubApi

    cache = Path(job.cache_dir)
    job.state = "checking"
    job.save()
    try:
        listed = HubApi().get_model_files(job.repo_id, revision=job.revision, recursive=True)
    except Exception as exc:
        return _fail(
            job, f"ModelScope can't be reached or has no {job.repo_id}: {exc}", UNREACHABLE_FIX
        )
    files = [f for f in listed if f.get("Type") != "tree"]
    job.files_total = len(files)
    job.bytes_total = sum(int(f.get("Size") or 0) for f in files)
    try:
        _check_disk(job, cache)
    except WizardError as exc:
        return _fail(job, exc.message, exc.fix)
    job.state = "downloading"
    job.save()
    path = snapshot_download(job.repo_id, revision=job.revision, cache_dir=str(cache))
    job.model_dir, job.state, job.bytes_done, job.files_done = (
        str(path),
        "done",
        job.bytes_total,
        len(files),
    )
    job.save()
    return 0


def worker_main(job_path: str) -> int:
    job = read_job(job_path)
    job.pid = os.getpid()
    try:
        import psutil

        job.pid_started = psutil.Process().create_time()
    except Exception:
        pass
    job.save()
    try:
        if job.source == "modelscope":
            return _download_modelscope(job)
        return _download_hf(job)
    except Exception as exc:  # a bug or an unexpected answer: the job says so, not a silent death
        import traceback

        traceback.print_exc()
        return _fail(job, f"{type(exc).__name__}: {exc}", f"see {job.log}")


# --- the tutorial's layout -------------------------------------------------------------------
def link_into_workspace(ws: Workspace, target: Path, name: str) -> Path:
    """Link ``target`` into the workspace as ``name`` (``ORG/NAME``, the tutorial's layout:
    ``Shanghai_AI_Laboratory/internlm2-chat-1_8b``). Returns the link; the same link again (or
    ``target`` itself already there) is a no-op; anything else at that path is refused."""
    target = Path(target).expanduser().resolve()
    parts = Path(name).parts
    if not parts or Path(name).is_absolute() or ".." in parts or parts[0] in (".wizard", "datas"):
        raise WizardError(
            f"{name!r} is not a folder name inside the workspace",
            where="--as",
            fix="give ORG/NAME, e.g. Shanghai_AI_Laboratory/internlm2-chat-1_8b",
        )
    if not (target / "config.json").is_file():
        raise WizardError(
            "not a model folder: no config.json",
            where=str(target),
            fix="link the folder that holds config.json and the weights",
        )
    link = ws.root / name
    if link.is_symlink():
        if link.resolve() == target:
            return link
        raise WizardError(
            f"already links to {os.readlink(link)}",
            where=str(link),
            fix="remove that link first, or pick another name with --as",
        )
    if link.exists():
        if link.resolve() == target:  # the folder itself, already in the workspace there
            return link
        raise WizardError(
            "something is already there; not replacing it",
            where=str(link),
            fix="pick another name with --as",
        )
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(target, target_is_directory=True)
    return link


if __name__ == "__main__":
    sys.exit(worker_main(sys.argv[1]))
