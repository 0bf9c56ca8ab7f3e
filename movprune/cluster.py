"""The batch's sweeps on a Ray cluster: one Ray task per missing run, the driver the only writer of the store.

    python -m movprune batch --profile paper --tasks all --executor ray --address auto --only sweeps

Every missing run of the profile becomes one task asking for one GPU when the cluster has GPUs (one
CPU otherwise, trained with one thread); Ray places the tasks on every GPU of every node. A task
trains its config in the worker's run folder (``--work-dir``: on a shared filesystem a retried task
resumes from the last checkpoint, on a node's own disk it resumes only there) and returns its record,
its analysis file and, for a distillation teacher, its final model. The driver (the machine running
the command) lands records and analysis files in its results store, atomically, one writer for the
whole cluster: the workers need no shared filesystem. Teachers' models come back to the driver's
``--work-dir`` and go out to their students through Ray's object store.

Faults: a task whose worker dies (killed, out of memory, a node lost) is retried by Ray, at most
``max_retries`` times; a run that raises (a bad config, missing data) is reported once with its
one-line error and not retried. A task that finished but whose driver died before landing it left its
output in its run folder: the next batch lands it from there instead of training again.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import socket
import sys
import tarfile
import tempfile
import traceback
from pathlib import Path
from typing import Optional

from .config import RunConfig, final_model_dir
from .store import ResultStore, _jsonable
from .records import predicts_one_class

MAX_RETRIES = 3  # Ray's own default for tasks: a run whose worker died this many more times is a failure
OUTPUT_DIR = "output"   # <run folder>/output: a finished run's record and side files, until the driver has them
WORKER_FILE = "worker.json"  # <run folder>/worker.json: the node and process training the run


def import_ray():
    """The ``ray`` module, or a one-line ValueError saying how to install it."""
    try:
        import ray
    except ImportError:
        raise ValueError("--executor ray needs Ray: pip install -e '.[cluster]'") from None
    return ray


def connect(address: Optional[str] = None):
    """Join the Ray cluster at ``address`` ("auto": the one started on this machine with ``ray start``;
    None: $RAY_ADDRESS, else a new local cluster of this machine's CPUs and GPUs). Reuses a connection
    this process already has. Returns the ``ray`` module."""
    ray = import_ray()
    if not ray.is_initialized():
        check_address(address)
        try:
            ray.init(address=address, log_to_driver=True, configure_logging=False)
        except ConnectionError as e:
            raise ValueError(f"cannot reach the Ray cluster at {address!r}: {str(e).splitlines()[0]}") from None
    return ray


def check_address(address: Optional[str]) -> None:
    """A one-line ValueError when ``address`` is ``HOST:PORT`` and nothing answers there within 5 seconds
    (Ray itself would keep retrying for minutes)."""
    if not address or address == "auto" or "://" in address:
        return
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"--address must be auto or HOST:PORT (e.g. 10.0.0.1:6379), got {address!r}")
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as e:
        raise ValueError(f"cannot reach the Ray cluster at {address}: {e.strerror or e} "
                         f"(is `ray start --head` running there?)") from None


def task_options(resources: dict, max_retries: int = MAX_RETRIES) -> dict:
    """Ray options of one run's task on a cluster with ``resources`` (``ray.cluster_resources()``): one GPU
    and one CPU where the cluster has GPUs, else one CPU."""
    gpus = resources.get("GPU", 0) > 0
    return {"num_cpus": 1, "num_gpus": 1 if gpus else 0, "max_retries": max_retries}


# ---------------------------------------------------------------------------------------------
# The worker's side


def pack_folder(folder: Path) -> bytes:
    """The files of ``folder`` as the bytes of an uncompressed tar (model weights do not compress)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        tar.add(str(folder), arcname=".")
    return buffer.getvalue()


def unpack_folder(data: bytes, folder: Path) -> None:
    """Unpack :func:`pack_folder`'s bytes into ``folder`` unless it exists; atomic (a temporary folder
    beside it, renamed into place), so two processes unpacking the same model leave one complete copy."""
    folder = Path(folder)
    if folder.is_dir():
        return
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}-"))
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r") as tar:
            tar.extractall(tmp, filter="data")
        os.rename(tmp, folder)
    except OSError:
        if not folder.is_dir():
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def save_output(run_dir: Path, output) -> None:
    """Keep a finished run's :class:`~movprune.train.RunOutput` in ``<run_dir>/output`` (written beside,
    then renamed into place) until the driver has landed it."""
    tmp = Path(tempfile.mkdtemp(dir=run_dir, prefix=f".{OUTPUT_DIR}-"))
    (tmp / "record.json").write_text(json.dumps(output.record, default=_jsonable))
    for suffix, data in output.files.items():
        (tmp / f"file{suffix}").write_bytes(data)
    shutil.rmtree(run_dir / OUTPUT_DIR, ignore_errors=True)
    os.rename(tmp, run_dir / OUTPUT_DIR)


def load_output(run_dir: Path, run_id: str):
    """The :class:`~movprune.train.RunOutput` kept by :func:`save_output` for ``run_id``, else None."""
    from .train import RunOutput

    folder = Path(run_dir) / OUTPUT_DIR
    try:
        record = json.loads((folder / "record.json").read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("run_id") != run_id:
        return None
    files = {p.name[len("file"):]: p.read_bytes() for p in folder.glob("file.*")}
    return RunOutput(record, files)


def train_task(config: RunConfig, work_dir: str, force: bool = False, teacher_model: Optional[bytes] = None,
               ship_model: bool = False, threads: int = 1) -> dict:
    """One run on a worker; what the Ray task executes. Never raises for the run's own errors.

    Trains ``config`` in ``work_dir/<run_id>`` (resuming from its last checkpoint) unless a finished
    output waits there; ``teacher_model`` (:func:`pack_folder` bytes) is unpacked as the teacher's model
    when the worker has none. Returns ``{"status": "trained" | "failed", "output": RunOutput, "extra":
    [RunOutputs of teachers trained on the way], "model": the final model's bytes when ``ship_model``,
    "message": one line on failure, "node", "pid"}``.
    """
    import torch

    from .train import remove_checkpoints, run_one

    if threads and not torch.cuda.is_available():
        torch.set_num_threads(threads)
    work = Path(work_dir)
    run_id = config.run_id()
    run_dir = work / run_id
    where = {"node": socket.gethostname(), "pid": os.getpid()}
    scratch = Path(tempfile.mkdtemp(prefix="movprune-store-"))
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / WORKER_FILE).write_text(json.dumps(where))
        output = None if force else load_output(run_dir, run_id)
        extra = []
        if output is None:
            if config.distill and not config.teacher_dir and teacher_model is not None:
                unpack_folder(teacher_model, final_model_dir(config.teacher_config(), work))
            store = ResultStore(scratch)  # a teacher trained on the way is stored here, then returned
            output = run_one(config, work, store, progress=False)
            save_output(run_dir, output)
            remove_checkpoints(config, work)
            extra = [_stored_output(store, r["run_id"]) for r in store.records()]
        model = pack_folder(final_model_dir(config, work)) if ship_model else None
        return {"status": "trained", "output": output, "extra": extra, "model": model, **where}
    except Exception as e:  # the run's own error: reported once, not retried
        traceback.print_exc(file=sys.stderr)
        return {"status": "failed", "message": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}",
                **where}
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _stored_output(store: ResultStore, run_id: str):
    from .train import RunOutput

    side = store.side_file(run_id, ".npz")
    return RunOutput(store.get(run_id), {".npz": side.read_bytes()} if side.is_file() else {})


# ---------------------------------------------------------------------------------------------
# The driver's side


def run_sweeps_ray(configs, store: ResultStore, work_dir: Path, log=print, address: Optional[str] = None,
                   task_work_dir: Optional[str] = None, max_retries: int = MAX_RETRIES) -> dict:
    """Train every config missing from ``store`` as Ray tasks; the same phases and the same result as
    :func:`movprune.batch.run_sweeps` (``{"trained", "cached", "failed": {run_id: message}, "skipped"}``).

    ``work_dir``: the driver's run folder root (teachers' models land there); ``task_work_dir``: the
    workers' (default: the same path, absolute; give a shared filesystem's path on a multi-node cluster
    for retried tasks to resume on any node). ``max_retries``: how often a task whose worker died is
    started again.
    """
    from .batch import sweep_phases
    from .train import land

    ray = connect(address)
    store.check_writable()
    work_dir = Path(work_dir).resolve()
    task_work = str(Path(task_work_dir).resolve()) if task_work_dir else str(work_dir)
    options = task_options(ray.cluster_resources(), max_retries)
    remote = ray.remote(train_task).options(**options)
    counts = {"trained": 0, "cached": 0}
    failures: dict = {}
    todo = [c for c in configs if store.get(c.run_id()) is None]
    counts["cached"] = len(configs) - len(todo)
    teacher_ids = {c.teacher_config().run_id() for c in todo if c.distill and not c.teacher_dir}
    shipped: dict = {}  # teacher run id -> object ref of its packed model, for the students
    kind = "1 GPU" if options["num_gpus"] else "1 CPU"
    log(f"[batch] Ray cluster: {_describe(ray.cluster_resources())}; each run is one task on {kind} "
        f"(retried up to {max_retries} times if its worker dies)")

    def teacher_ref(config):
        if not config.distill or config.teacher_dir:
            return None
        tid = config.teacher_config().run_id()
        if tid not in shipped:
            folder = final_model_dir(config.teacher_config(), work_dir)
            shipped[tid] = ray.put(pack_folder(folder)) if (folder / "movprune_model.safetensors").is_file() else None
        return shipped[tid]

    for phase in sweep_phases(todo, work_dir):
        pending = {}
        for config, force in phase():
            ref = remote.remote(config, task_work, force, teacher_ref(config), config.run_id() in teacher_ids, 1)
            pending[ref] = config
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            config = pending.pop(done[0])
            run_id = config.run_id()
            try:
                result = ray.get(done[0])
            except Exception as e:  # the worker died more often than max_retries, or the task was lost
                failures[run_id] = f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"
                log(f"FAILED {run_id}: {failures[run_id]}")
                continue
            if result["status"] == "failed":
                failures[run_id] = result["message"]
                log(f"FAILED {run_id}: {result['message']} (on {result['node']})")
                continue
            for extra in result["extra"]:  # a teacher the task trained on the way, when the store lacks it
                if store.get(extra.run_id) is None:
                    land(store, extra)
            record = land(store, result["output"])
            if result["model"] is not None:
                unpack_folder(result["model"], final_model_dir(config, work_dir))
                shipped.pop(run_id, None)
            counts["trained"] += 1
            log(f"trained {run_id}: {_summary(record)} (on {result['node']})")
    return {**counts, "failed": failures, "skipped": []}


def _summary(r: dict) -> str:
    return (f"{r['main_metric']} {r['score']:.2f}, remaining {r['remaining']:.4f}, {r['train_time_s']:.0f}s"
            + (" (COLLAPSED: one class)" if predicts_one_class(r) else ""))


def _describe(resources: dict) -> str:
    gpus = int(resources.get("GPU", 0))
    return f"{int(resources.get('CPU', 0))} CPUs" + (f", {gpus} GPUs" if gpus else ", no GPU")
