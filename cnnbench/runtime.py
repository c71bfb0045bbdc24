"""Process-level helpers shared by the commands: run directory (and its checks), paths, JSON output,
failure records."""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import time
import traceback
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import OmegaConf

from cnnbench.errors import UserError

if TYPE_CHECKING:
    import torch

PROCESS_START = time.time()  # set when cnnbench is first imported (by the console script: at launch)


def _run_dir(task: str, run_name: str | None) -> str:
    if run_name:
        return f"outputs/{task}/{run_name}"
    return f"outputs/{task}/{datetime.now():%Y-%m-%d}/{datetime.now():%H-%M-%S-%f}"


def register_resolvers() -> None:
    """Register cnnbench's OmegaConf resolvers (idempotent): `${cnnbench_run_dir:…}` (conf/train.yaml's run dir)
    and hardware's `${cnnbench_precision:…}`, `${cnnbench_pin_memory:}` (conf/hardware/auto.yaml, cpu.yaml).
    Called by whatever composes or resolves a config: the console script (`cnnbench.cli`), tests' conftest —
    not at import, so importing this leaf changes no global state."""
    if not OmegaConf.has_resolver("cnnbench_run_dir"):
        OmegaConf.register_new_resolver("cnnbench_run_dir", _run_dir, use_cache=True)
    from cnnbench.hardware import register_resolvers as hardware_resolvers

    hardware_resolvers()


def hydra_output_dir() -> Path | None:
    try:
        from hydra.core.hydra_config import HydraConfig

        if HydraConfig.initialized():
            return Path(HydraConfig.get().runtime.output_dir)
    except Exception:  # noqa: BLE001 - hydra not in use
        return None
    return None


def resolve_run_dir(run_dir: str | Path | None) -> Path:
    """The run dir: given explicitly (in-process use), else Hydra's output dir (never the working directory)."""
    if run_dir is None:
        run_dir = hydra_output_dir()
    if run_dir is None:
        run_dir = Path(_run_dir("run", None))
    path = Path(run_dir).absolute()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"run dir {path} is not writable ({err.strerror or err}); "
                        "pick another with hydra.run.dir=… or run_name=…") from None
    return path


def remove_unused_run_dir(run_dir: Path | None, stop_at: Path) -> bool:
    """After a bad-input error: remove the run dir Hydra made for this process if it holds nothing but
    Hydra's own files (`.hydra/`, the job log), then its parents that this process made and left empty,
    never `stop_at` or above it. A dir made before this process started (a resumed run, a reused
    `hydra.run.dir=`) or holding anything else is kept. True when the run dir was removed."""
    if run_dir is None or not run_dir.is_dir():
        return False
    made_now = lambda p: p.stat().st_mtime >= PROCESS_START - 1.0  # noqa: E731
    entries = list(run_dir.iterdir())
    hydra_only = all((e.name == ".hydra" and e.is_dir()) or (e.is_file() and e.suffix == ".log") for e in entries)
    hydra = run_dir / ".hydra"
    if not hydra_only or (hydra.exists() and not made_now(hydra)):
        return False
    shutil.rmtree(run_dir, ignore_errors=True)
    stop_at = stop_at.absolute()
    parent = run_dir.parent
    while parent != stop_at and stop_at in parent.parents and not any(parent.iterdir()) and made_now(parent):
        parent.rmdir()
        parent = parent.parent
    return not run_dir.exists()


def original_cwd() -> Path:
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.utils import get_original_cwd

        if HydraConfig.initialized():
            return Path(get_original_cwd())
    except Exception:  # noqa: BLE001
        pass
    return Path(os.getcwd())


def absolute(path: str | None) -> str | None:
    """A user path made absolute against the directory cnnbench was started from."""
    if path is None or path == "":
        return path
    p = Path(os.path.expanduser(str(path)))
    return str(p if p.is_absolute() else (original_cwd() / p).absolute())


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write JSON atomically (temporary file + rename) so a crash never leaves half a file."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w") as f:
        json.dump(data, f, indent=2, sort_keys=False, default=str)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


# -- run dir checks ----------------------------------------------------------------------------------
def estimate_checkpoint_bytes(module: torch.nn.Module) -> int:
    """Weights + optimizer state (up to two moments) + averaged copy: a generous bound."""
    n = sum(p.numel() * p.element_size() for p in module.parameters())
    n += sum(b.numel() * b.element_size() for b in module.buffers())
    return 4 * n + (1 << 20)


def check_run_dir(run_dir: Path, need_bytes: int) -> None:
    """Fail before training when the run dir cannot be written or lacks room for a checkpoint."""
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-probe-", dir=run_dir)
        try:
            os.write(fd, b"\0" * 4096)
            os.fsync(fd)
        finally:
            os.close(fd)
            os.unlink(probe)
    except OSError as err:
        raise UserError(f"run dir {run_dir} is not writable ({err.strerror or err}); "
                        "pick another with hydra.run.dir=… or run_name=…") from None
    free = shutil.disk_usage(run_dir).free
    if free < need_bytes:
        raise UserError(f"run dir {run_dir} has {free / 2**20:.1f} MiB free, a checkpoint needs about "
                        f"{need_bytes / 2**20:.1f} MiB; free space or pick another run dir")


# -- the process that speaks for a job ---------------------------------------------------------------
def is_rank_zero() -> bool:
    """True in the one process of a job that prints its start line and holds its run-dir lock: global rank 0
    as Lightning reads it (RANK, LOCAL_RANK, SLURM_PROCID, set by torchrun, Lightning's own launcher and srun)
    on node 0 (NODE_RANK, which a by-hand multi-node launch sets on every node while RANK stays unset)."""
    from lightning.fabric.utilities.rank_zero import rank_zero_only

    return getattr(rank_zero_only, "rank", 0) == 0 and int(os.environ.get("NODE_RANK", 0) or 0) == 0


# -- one training job per run dir ---------------------------------------------------------------------
RUN_LOCK = ".train.lock"


@contextlib.contextmanager
def run_dir_lock(run_dir: Path):
    """Hold `<run_dir>/.train.lock` while a training job runs in `run_dir`, so that a second `cnnbench train`
    in the same dir (the same `run_name=` started twice, e.g. a `resume=auto` row) stops with one line instead
    of training the same checkpoints beside the first. The lock is the operating system's (`flock`): a killed
    job leaves no stale lock. Taken by rank 0 of node 0 only (`is_rank_zero`; the other ranks and nodes of a
    job share its dir); where `fcntl` is missing (Windows) nothing is locked."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        fcntl = None
    if fcntl is None or not is_rank_zero():
        yield
        return
    path = Path(run_dir) / RUN_LOCK
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
            raise UserError(f"run dir {run_dir} is in use by another `cnnbench train` (pid {holder}); wait for "
                            "it to end, or pick another run_name=…") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        try:
            yield
        finally:
            with contextlib.suppress(OSError):
                path.unlink()  # while still held: the next job makes a fresh one
    finally:
        os.close(fd)


# -- failure records ---------------------------------------------------------------------------------
def record_failure(run_dir: Path, rank: int, err: BaseException, step: int | None) -> Path:
    """`failed-rank<r>.json` in the run dir: what was raised, where, at which step."""
    path = Path(run_dir) / f"failed-rank{rank}.json"
    text = " ".join(str(err).split()) or type(err).__name__
    with contextlib.suppress(OSError):
        write_json(path, {
            "rank": rank, "pid": os.getpid(), "step": step, "error": type(err).__name__, "message": text[:2000],
            "traceback": traceback.format_exception(type(err), err, err.__traceback__)[-6:],
        })
    return path


def earlier_failure_records(run_dir: Path) -> list[dict[str, Any]]:
    """The records of the `failed-rank<r>.json` files an earlier attempt of this run left in its run dir (a run
    resumed after a failure), each with its file name. A run that then finishes keeps them in its results.json
    (`earlier_failures`) and removes the files, which beside results.json would read as the finished attempt's."""
    records = []
    for path in sorted(Path(run_dir).glob("failed-rank*.json")):
        try:
            records.append({"file": path.name, **json.loads(path.read_text())})
        except (OSError, ValueError) as err:
            records.append({"file": path.name, "unreadable": str(err)})
    return records
