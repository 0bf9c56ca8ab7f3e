"""The main job: every run the notebooks need, then every notebook, into ``results/<profile>/``.

    python -m movprune batch                      # profile 'minilm' (the default: the sound replication,
                                                  # SST-2, SICK and SQuAD), then the other profiles'
                                                  # committed records re-rendered (gpu)
    python -m movprune batch --only notebooks     # figures and tables from the store, nothing trained
    python -m movprune batch --dry-run            # which runs have no record, and their training time
    python -m movprune batch --profile smoke      # the whole pipeline in minutes (a random tiny BERT)
    python -m movprune batch --only sweeps        # training only (e.g. on a GPU machine)

Two steps, both restartable:

1. sweeps - each run of the profile is looked up in the results store and trained only when
   missing; a run that fails is reported and the others go on; a run another batch process is
   training right now (a lock file) is skipped by this one. With every run stored this is a lookup.
2. notebooks - each notebook in ``notebooks/`` is executed with papermill into
   ``results/<profile>/notebooks/``; they write ``figures/`` and ``tables/``. A failing
   notebook does not stop the others. The executed copies are scrubbed of what changes from one
   execution, machine or checkout to the next (timestamps, absolute paths), so a re-render of
   unchanged records on a fresh clone leaves ``git status`` clean.

With no ``--profile``, the batch renders ``minilm`` with all its tasks first, then re-renders every
other profile whose run records are committed under ``results/`` (``gpu``): notebooks only, nothing
trained for them (``--also none`` skips this; ``--profile gpu`` trains that profile's missing runs).
``demo`` (300-step runs, most pruned ones collapsed) and ``smoke`` are never rendered by default.

Finally ``results/<profile>/README.md`` shows every figure and table with the profile, machine and
wall time that produced them. The exit status is 1 when any run or notebook failed.
"""

from __future__ import annotations

import fcntl
import json
import os
import platform
import sys
import time
import traceback
from contextlib import contextmanager
from pathlib import Path
from typing import Optional

from .profiles import DEFAULT_PROFILE, get_profile
from .store import ResultStore
from .records import predicts_one_class
from .gpus import pinned_gpu, process_pool, visible_gpus
from .train import bf16_native, emulated_bf16_note, final_model_dir, run

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO / "notebooks"


@contextmanager
def run_lock(path: Path):
    """Non-blocking exclusive lock; yields False when another process holds it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _train_one(config, store_root: str, work_dir: str, threads: int = 0, force: bool = False) -> tuple:
    """Train one config under its lock. Returns ``(status, run_id, message)``; never raises.

    ``force`` retrains a stored run (a distillation teacher whose model folder is not on this machine).
    """
    if threads:
        import torch

        torch.set_num_threads(threads)
    store, work = ResultStore(store_root), Path(work_dir)
    run_id = config.run_id()
    if store.get(run_id) is not None and not force:
        return "cached", run_id, ""
    with run_lock(work / "locks" / f"{run_id}.lock") as mine:
        if not mine:
            return "skipped", run_id, "another batch process is training it"
        try:
            r = run(config, store=store, work_dir=work, progress=False, force=force)
            gpu = pinned_gpu()
            return "trained", run_id, (f"{r['main_metric']} {r['score']:.2f}, remaining {r['remaining']:.4f}, "
                                       f"{r['train_time_s']:.0f}s" + (" (COLLAPSED: one class)" if predicts_one_class(r) else "")
                                       + (f" (GPU {gpu})" if gpu is not None else ""))
        except Exception as e:  # one failing run must not stop the batch
            traceback.print_exc(file=sys.stderr)
            return "failed", run_id, f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"


def missing_teachers(configs, work_dir) -> list:
    """The distillation teachers of ``configs`` (dense runs, once each) whose model is not in ``work_dir``."""
    out = {}
    for c in configs:
        if c.distill and not c.teacher_dir:
            t = c.teacher_config()
            if not (final_model_dir(t, work_dir) / "movprune_model.safetensors").is_file():
                out.setdefault(t.run_id(), t)
    return list(out.values())


def default_jobs() -> int:
    """Parallel runs: one per GPU (:func:`movprune.gpus.visible_gpus`); without a GPU 2 on a machine with
    >= 2 cores (two 1-thread runs beat one 2-thread run by ~15% on the 2-core reference machine), else 1."""
    gpus = visible_gpus()
    if gpus:
        return len(gpus)
    return 2 if (os.cpu_count() or 1) >= 2 else 1


def sweep_phases(todo, work_dir) -> list:
    """The order of a sweep over the missing configs ``todo``: three phases, each a function returning
    ``[(config, force), ...]`` and called only once the phase before it has finished.

    1. the undistilled runs, and beside them the teachers that are stored but whose model is not in
       ``work_dir`` (retrained, forced: they depend on nothing, and on a GPU running several jobs
       this saves a whole phase);
    2. the teachers still missing a model (those trained in phase 1 as missing runs have one by now);
    3. the distilled runs.
    """
    distilled = [c for c in todo if c.distill]
    todo_ids = {c.run_id() for c in todo}
    stored = [t for t in missing_teachers(distilled, work_dir) if t.run_id() not in todo_ids]
    return [lambda: [(c, False) for c in todo if not c.distill] + [(t, True) for t in stored],
            lambda: [(t, True) for t in missing_teachers(distilled, work_dir) if t.run_id() not in
                     {s.run_id() for s in stored}],
            lambda: [(c, False) for c in distilled]]


def run_sweeps(configs, store: ResultStore, work_dir: Path, log=print, jobs: int = 1, gpus=None) -> dict:
    """Train every missing config. Returns counts and the failures ``{run_id: message}``.

    With ``jobs > 1`` runs go to that many worker processes, each with ``cores // jobs`` threads and,
    on a machine with GPUs (``gpus``, default :func:`movprune.gpus.visible_gpus`), one GPU of its own
    (also at ``jobs=1`` when there are several GPUs).
    Runs without distillation (the teachers among them) go first, then the distilled ones
    (:func:`sweep_phases`). A teacher whose record is stored but whose model folder is not in
    ``work_dir`` (records travel, models do not) is retrained once, beside the undistilled runs, so
    that parallel students never train it twice; its record is rewritten by the run whose model
    teaches them.
    """
    from tqdm.auto import tqdm

    store.check_writable()
    counts = {"trained": 0, "cached": 0}
    failures, skipped = {}, []
    todo = [c for c in configs if store.get(c.run_id()) is None]
    counts["cached"] = len(configs) - len(todo)
    if not todo:  # nothing to train: no progress bar (a missing run's teachers are found through it)
        log(f"[batch] all {len(configs)} runs are stored; nothing to train")
        return {**counts, "failed": failures, "skipped": skipped}
    bar = tqdm(total=len(todo), desc="runs", unit="run")

    def record(result):
        status, run_id, message = result
        bar.update(1)
        if status == "failed":
            failures[run_id] = message
            log(f"FAILED {run_id}: {message}")
        elif status == "skipped":
            skipped.append(run_id)
            log(f"skipping {run_id}: {message}")
        else:
            counts[status] += 1
            log(f"{status} {run_id}: {message}")

    phases = sweep_phases(todo, work_dir)

    def items(phase):
        out = phase()
        bar.total += sum(force for _, force in out)  # the retrained teachers were not counted
        bar.refresh()
        return out

    gpus = visible_gpus() if gpus is None else gpus
    if jobs <= 1 and len(gpus) <= 1:
        for phase in phases:
            for config, force in items(phase):
                bar.set_postfix_str(config.run_id()[:48])
                record(_train_one(config, str(store.root), str(work_dir), force=force))
    else:  # one GPU per run even at --jobs 1: a process seeing several would split batches over them
        from concurrent.futures import as_completed

        threads = max(1, (os.cpu_count() or 1) // jobs)
        with process_pool(jobs, gpus) as pool:
            for phase in phases:
                futures = [pool.submit(_train_one, c, str(store.root), str(work_dir), threads, force)
                           for c, force in items(phase)]
                for f in as_completed(futures):
                    record(f.result())
    bar.close()
    return {**counts, "failed": failures, "skipped": skipped}


# The kernel's own log lines are noise to a user reading the batch output: a TCP-transport warning at
# start, and "KeyboardInterrupt caught in kernel." when jupyter_client's shutdown (which always sends
# SIGINT first) lands while the kernel is still handling a message. Cell errors still reach papermill.
KERNEL_ARGS = ["--IPKernelApp.log_level=CRITICAL"]
# executed notebooks must not change when re-rendered: no progress bars (speeds), no transformers load
# reports (absolute paths, keys in set order), one string-hash seed (set iteration order)
KERNEL_ENV = {"HF_HUB_DISABLE_PROGRESS_BARS": "1", "TQDM_DISABLE": "1", "TRANSFORMERS_VERBOSITY": "error",
              "PYTHONHASHSEED": "0"}


def run_notebooks(profile: str, results_dir: Path, tasks: str, log=print, notebooks_dir: Path = NOTEBOOKS) -> dict:
    """Execute every notebook with papermill. Returns ``{notebook: None | error message}``.

    ``results_dir`` is passed relative to the notebooks' folder when it can be (the notebooks' own
    default, ``../results/<profile>``), and the executed copies are scrubbed of timestamps, so that
    rendering unchanged records twice writes identical files.
    """
    try:
        import papermill
    except ImportError:
        raise ValueError("papermill is not installed: pip install -e '.[notebooks]' (or run with --only sweeps)") from None
    out_dir = results_dir / "notebooks"
    out_dir.mkdir(parents=True, exist_ok=True)
    param_dir = os.path.relpath(results_dir.resolve(), Path(notebooks_dir).resolve())
    status = {}
    started = time.time()
    saved_env = {k: os.environ.get(k) for k in KERNEL_ENV}
    os.environ.update(KERNEL_ENV)  # the kernel inherits this process's environment
    try:
        for nb in sorted(Path(notebooks_dir).glob("*.ipynb")):
            t0 = time.time()
            out = out_dir / nb.name
            try:
                papermill.execute_notebook(
                    str(nb), str(out), cwd=str(notebooks_dir), kernel_name="python3", progress_bar=False,
                    parameters={"profile": profile, "results_dir": param_dir, "tasks": tasks},
                    extra_arguments=KERNEL_ARGS)
                status[nb.name] = None
                log(f"notebook {nb.name}: ok ({time.time() - t0:.0f}s)")
            except Exception as e:
                status[nb.name] = f"{type(e).__name__}: {str(e).strip().splitlines()[-1] if str(e).strip() else ''}"[:300]
                log(f"notebook {nb.name}: FAILED ({status[nb.name]})")
            if out.is_file():
                scrub_notebook(out)
    finally:
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    if all(v is None for v in status.values()):
        _remove_stale_outputs(results_dir, started, log)
    return status


def _remove_stale_outputs(results_dir: Path, started: float, log=print) -> None:
    """Delete figures and tables that no notebook wrote in this rendering (e.g. of records that left the
    store), so the profile page shows only what its records support. Only after every notebook succeeded:
    a failed rendering keeps the previous files."""
    for sub, patterns in (("figures", ("*.png", "*.pdf")), ("tables", ("*.csv",))):
        for pattern in patterns:
            for f in sorted((results_dir / sub).glob(pattern)):
                if f.stat().st_mtime < started - 2.0:  # margin for filesystems with coarse timestamps
                    f.unlink()
                    log(f"removed {sub}/{f.name}: no notebook wrote it this time")


_VOLATILE_PAPERMILL = ("start_time", "end_time", "duration", "input_path", "output_path")


def path_placeholders() -> list:
    """``[(absolute folder, placeholder), ...]``, longest folder first: the folders of this checkout and
    of this Python that an executed notebook's output may name (a warning's source file, a traceback),
    and what :func:`scrub_paths` writes instead, so that the committed copy is the same on every machine."""
    import site

    roots = {str(REPO): "<repo>", str(Path.home()): "<home>"}
    for prefix in {sys.prefix, sys.exec_prefix, sys.base_prefix, sys.base_exec_prefix}:
        roots[prefix] = "<python>"
    for folder in [*site.getsitepackages(), site.getusersitepackages()]:
        roots[folder] = "<site-packages>"
    for folder in list(roots):
        try:  # the same folder as the kernel may spell it (through a symlink)
            roots.setdefault(os.path.realpath(folder), roots[folder])
        except OSError:
            pass
    return sorted(((k, v) for k, v in roots.items() if k not in ("", os.sep)), key=lambda kv: -len(kv[0]))


def scrub_paths(text: str, placeholders=None) -> str:
    """``text`` with every absolute folder of :func:`path_placeholders` replaced by its placeholder
    (whole folder names only: ``/home/u`` is not replaced inside ``/home/user``)."""
    import re

    for folder, name in placeholders if placeholders is not None else path_placeholders():
        if folder in text:
            text = re.sub(re.escape(folder) + r"(?![^\\/\s'\"`:;,)\]])", lambda _: name, text)
    return text


def _scrub_output(out: dict, placeholders) -> dict:
    """One cell output with :func:`scrub_paths` applied to its text (streams, tracebacks, plain-text data)."""
    def fix(value):
        if isinstance(value, str):
            return scrub_paths(value, placeholders)
        if isinstance(value, list):
            return [fix(v) for v in value]
        return value

    out = dict(out)
    for key in ("text", "traceback", "evalue"):
        if key in out:
            out[key] = fix(out[key])
    if isinstance(out.get("data"), dict):
        out["data"] = {mime: fix(v) if mime.startswith("text/") else v for mime, v in out["data"].items()}
    return out


def scrub_notebook(path: Path) -> None:
    """Remove what changes on every execution from an executed notebook: papermill's and the kernel's
    timestamps and per-cell timings, the absolute input/output paths, absolute folders in the outputs
    (:func:`scrub_paths`: the checkout, the Python installation, the home folder), the random id of the
    injected parameters cell, and the chunking of printed text (how a stream splits into outputs depends
    on when the kernel flushed)."""
    placeholders = path_placeholders()
    nb = json.loads(path.read_text(encoding="utf-8"))
    for key in _VOLATILE_PAPERMILL:
        nb.get("metadata", {}).get("papermill", {}).pop(key, None)
    for cell in nb.get("cells", []):
        meta = cell.get("metadata", {})
        meta.pop("execution", None)
        for key in _VOLATILE_PAPERMILL:
            meta.get("papermill", {}).pop(key, None)
        if "injected-parameters" in meta.get("tags", []):
            cell["id"] = "injected-parameters"
        if cell.get("outputs"):
            cell["outputs"] = [_scrub_output(o, placeholders) for o in _merge_streams(cell["outputs"])]
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _merge_streams(outputs: list) -> list:
    """Adjacent stdout (or stderr) outputs of a cell as one output, its text split into lines."""
    merged = []
    for out in outputs:
        prev = merged[-1] if merged else None
        if (out.get("output_type") == "stream" and prev is not None and prev.get("output_type") == "stream"
                and prev.get("name") == out.get("name")):
            prev["text"] = "".join(prev["text"]) + "".join(out["text"])
        else:
            merged.append(dict(out))
    for out in merged:
        if out.get("output_type") == "stream":
            out["text"] = "".join(out["text"]).splitlines(keepends=True)
    return merged


def _run_devices(runs_dir: Path) -> dict:
    """``{device: number of records}`` of a results store (records may come from other machines)."""
    from collections import Counter

    from .store import ResultStore

    if not Path(runs_dir).is_dir():
        return {}
    counts = Counter(r.get("device", "unknown") for r in ResultStore(runs_dir).records())
    return dict(sorted(counts.items()))


def _legacy_training(old: dict) -> dict:
    """The training entry of a batch.json written before it had one (when that invocation trained)."""
    sweeps = old.get("sweeps") or {}
    if not sweeps.get("trained"):
        return {}
    return {"trained": sweeps["trained"], "wall_s": round(old.get("sweeps_s", 0.0), 1),
            "jobs": None, "machine": old.get("machine", "?"),
            "torch": old.get("torch", "?"), "finished_at": old.get("finished_at", "?")}


def run_train_time(record: dict) -> Optional[float]:
    """A record's training seconds for the whole run. A run resumed from a checkpoint that did not keep
    the time before it (``train_time_before_resume_s`` None or absent) timed only its last part: that part
    is scaled to all the run's steps (seconds x steps / steps after the resume)."""
    seconds = record.get("train_time_s")
    resumed = record.get("resumed_from")
    if seconds is None or not resumed or record.get("train_time_before_resume_s") is not None:
        return seconds
    try:
        at, steps = int(str(resumed).rstrip("/").rsplit("-", 1)[-1]), int(record["steps"])
    except (KeyError, TypeError, ValueError):
        return seconds
    return seconds * steps / (steps - at) if 0 <= at < steps else seconds


def page_tasks(prof, task_list, default_tasks: bool, stored_tasks) -> list:
    """The tasks a profile's page shows: ``task_list``, and when no ``--tasks`` was given
    (``default_tasks``) the profile's other tasks whose runs the store holds (``stored_tasks``); the
    page renders them and counts their missing runs."""
    shown = list(task_list)
    if default_tasks:
        shown += [t for t in prof.all_tasks if t in stored_tasks and t not in shown]
    return shown


def training_cost(runs_dir: Path, missing=()) -> list:
    """What retraining a profile costs, from its stored records' own ``train_time_s``.

    One line per device: runs, summed training hours (one run at a time). When ``missing`` configs are
    given, one more line estimates them at the mean time of the stored runs of the same task and
    device, distilled or not like them when such runs are stored (a distilled run also runs its
    teacher); an estimate, labelled as one; tasks with no stored run are counted, not timed.
    """
    from collections import defaultdict

    per_device, per_task, per_kind = defaultdict(list), defaultdict(list), defaultdict(list)
    extrapolated = defaultdict(int)
    for r in ResultStore(runs_dir).records():
        seconds = run_train_time(r)
        if seconds is None:
            continue
        device = r.get("device", "unknown")
        extrapolated[device] += seconds != r["train_time_s"]
        per_device[device].append(seconds)
        per_task[(device, r.get("task"))].append(seconds)
        per_kind[(device, r.get("task"), bool(r.get("distill")))].append(seconds)
    lines = [f"{device}: {len(t)} run{'s' if len(t) != 1 else ''}, {sum(t) / 3600:.1f} h of training"
             + (f" ({extrapolated[device]} resumed run{'s' if extrapolated[device] != 1 else ''} timed only after "
                "the resume, extrapolated to all their steps)" if extrapolated[device] else "")
             for device, t in sorted(per_device.items())]
    if missing:
        for device in sorted(per_device):
            timed = [per_kind.get((device, c.task, bool(getattr(c, "distill", False)))) or per_task[(device, c.task)]
                     for c in missing if per_task.get((device, c.task))]
            if not timed:  # no stored run of these tasks on this device: nothing to estimate from
                continue
            est = sum(sum(t) / len(t) for t in timed)
            what = "the run still missing" if len(missing) == 1 else f"the {len(missing)} runs still missing"
            lines.append(f"{what}, at the mean time of this device's stored runs "
                         f"of their task (distilled or not, like them): ~{est / 3600:.1f} h on {device}"
                         + (f" ({len(missing) - len(timed)} of them on tasks with no stored run, not counted)"
                            if len(timed) < len(missing) else ""))
    return lines


def write_readme(results_dir: Path, meta: dict, missing=()) -> Path:
    """``results/<profile>/README.md``: every figure and table, and how they were made."""
    lines = [f"# Results — profile `{meta['profile']}`", "", f"Produced by `{meta['command']}`.", ""]
    training = meta.get("training") or {}
    if training:
        lines += [f"Wall time of the last invocation that trained runs: {training['wall_s'] / 60:.1f} min for "
                  f"{training['trained']} runs on {training['machine']} (torch {training['torch']}"
                  + (", one Ray task per run" if training.get("jobs") == "ray"
                     else f", {training['jobs']} run(s) at a time" if training.get("jobs") else "")
                  + f"), finished {training['finished_at']}.", ""]
    stored = {p.stem for p in (results_dir / "runs").glob("*.json")}
    # what the store holds, not what this invocation did: a re-render writes the same page
    lines += [f"Runs in the store: {len(stored)}.", ""]
    devices = _run_devices(results_dir / "runs")
    if devices:
        lines += ["Runs in the store, by the device that trained them: "
                  + ", ".join(f"{d} ({n})" for d, n in devices.items()) + ".", ""]
    cost = training_cost(results_dir / "runs", missing)
    if cost:
        lines += ["Training time (each record's own `train_time_s`, summed as if one run at a time; "
                  "`cpu x1` = one thread, so two runs side by side on 2 cores halve the wall time):", ""]
        lines += [f"- {c}" for c in cost] + [""]
    # a run that failed in the last training invocation and is stored by now (retrained) is no failure
    failed_runs = {k: v for k, v in ((meta.get("sweeps") or {}).get("failed") or {}).items() if k not in stored}
    failed_nbs = {k: v for k, v in (meta.get("notebooks") or {}).items() if v}
    if failed_runs or failed_nbs:
        lines += ["## Failures", ""] + [f"- run `{k}`: {v}" for k, v in failed_runs.items()] + \
                 [f"- notebook `{k}`: {v}" for k, v in failed_nbs.items()] + [""]
    # per notebook: our results first, then beside the paper, the claims' verdicts, the raw points last
    tables = sorted((results_dir / "tables").glob("*.csv"),
                    key=lambda t: (t.stem.split("_")[0], "raw_points" in t.stem, "claims" in t.stem, "beside" in t.stem,
                                   t.stem))
    if tables:
        lines += ["## Tables", ""]
        for t in tables:
            if t.stem.endswith("_rows"):  # long-form rows (every column of every pair): the CSV only
                lines += [f"### {t.stem}", "", f"One row per pair with its test statistics: [CSV](tables/{t.name})", ""]
                continue
            lines += [f"### {t.stem}", "", _csv_to_markdown(t), "", f"([CSV](tables/{t.name}))", ""]
    figures = sorted((results_dir / "figures").glob("*.png"))
    if figures:
        lines += ["## Figures", ""]
        for f in figures:
            pdf = f.with_suffix(".pdf")
            link = f" ([PDF](figures/{pdf.name}))" if pdf.exists() else ""
            lines += [f"### {f.stem}{link}", "", f"![{f.stem}](figures/{f.name})", ""]
    nbs = sorted((results_dir / "notebooks").glob("*.ipynb"))
    if nbs:
        lines += ["## Executed notebooks", ""] + [f"- [{n.name}](notebooks/{n.name})" for n in nbs] + [""]
    path = results_dir / "README.md"
    path.write_text("\n".join(lines))
    return path


def write_index(results_root: Path) -> Path:
    """``results/README.md``: every profile's page, links rewritten to point into its folder."""
    import re

    parts = ["# movprune results", "",
             "Written by `python -m movprune batch`; one section per profile that has been run. "
             f"Each profile's own page is `results/<profile>/README.md`; `{DEFAULT_PROFILE}` (the default profile) first.",
             ""]
    pages = sorted(Path(results_root).glob("*/README.md"), key=lambda page: (page.parent.name != DEFAULT_PROFILE,
                                                                            page.parent.name))
    for page in pages:  # the default profile (the sound replication) first
        profile = page.parent.name
        text = page.read_text()
        text = re.sub(r"\]\((figures|tables|notebooks)/", rf"]({profile}/\1/", text)
        text = re.sub(r"^(#+) ", r"#\1 ", text, flags=re.M)  # nest the profile's headings one level down
        parts += [text, ""]
    path = Path(results_root) / "README.md"
    path.write_text("\n".join(parts))
    return path


def _csv_to_markdown(path: Path, max_rows: int = 60) -> str:
    import csv

    with open(path, newline="") as f:
        rows = [r for r in csv.reader(f) if r and not r[0].startswith("#")]
    if not rows:
        return "(empty)"
    header, body = rows[0], rows[1:max_rows + 1]
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(r) + " |" for r in body]
    if len(rows) - 1 > max_rows:
        out.append(f"| … {len(rows) - 1 - max_rows} more rows in the CSV |")
    return "\n".join(out)


def committed_profiles(results="results", exclude=()) -> list:
    """Known profiles (other than ``exclude``) that have run records in ``results/<profile>/runs/``."""
    from .profiles import PROFILES

    return [name for name in PROFILES
            if name not in exclude and any((Path(results) / name / "runs").glob("*.json"))]


def _emulated_bf16(profile: str, todo) -> Optional[str]:
    """One line when runs of ``todo`` ask for bf16 on a CPU without bf16 hardware (else None): they train
    with :mod:`movprune.bf16`'s emulation."""
    import torch

    n = sum(bool(getattr(c, "bf16", False)) for c in todo)
    if not n or torch.cuda.is_available() or bf16_native():
        return None
    return emulated_bf16_note(f"profile {profile!r} ({n} of the {len(todo)} missing runs)")


def _dry_run(profile, task_list, seed_list, configs, store: ResultStore, work: Path) -> int:
    """What ``run_batch`` would train, without training (``--dry-run``)."""
    todo = [c for c in configs if store.get(c.run_id()) is None]
    todo_ids = {c.run_id() for c in todo}
    # as run_sweeps: only for missing runs, and a teacher that is itself missing is trained as a run
    teachers = [t for t in missing_teachers([c for c in todo if c.distill], work) if t.run_id() not in todo_ids]
    print(f"[batch] profile {profile} ({', '.join(task_list)}; seeds {seed_list}): {len(configs)} runs, "
          f"{len(configs) - len(todo)} stored, {len(todo)} to train (dry run: nothing is trained or written)")
    from .estimate import estimate_lines

    for c in todo:
        print(f"  {c.run_id()}")
    if teachers and any(c.distill for c in todo):
        print(f"[batch] {len(teachers)} stored distillation teacher(s) without a model in {work}, retrained "
              "beside the undistilled runs: "
              + ", ".join(t.run_id() for t in teachers))
    for line in training_cost(store.root, todo):
        print(f"[batch] {line}")
    for line in estimate_lines(todo, list(store.records()), profile=profile) if todo else ():
        print(f"[batch] {line}")
    note = _emulated_bf16(profile, todo)
    if note:
        print(f"[batch] note: {note}; the estimate above is from the stored runs' machines")
    return 0


def run_batch(profile: str = DEFAULT_PROFILE, tasks=None, seeds=None, results="results", work_dir="checkpoints",
              only=None, notebooks_dir: Path = NOTEBOOKS, jobs=None, also=(), dry_run: bool = False,
              executor: str = "local", address=None) -> int:
    """The whole job; returns the process exit status (0 = everything succeeded).

    ``executor``: "local" (this machine's processes, one run per GPU) or "ray" (one Ray task per run on
    the cluster at ``address``, :mod:`movprune.cluster`; the store is written by this process only).

    ``also``: further profiles whose notebooks are re-executed over their stored records after this
    one (nothing is trained for them), e.g. ``committed_profiles(results, exclude=[profile])``.
    ``dry_run``: print the runs that have no record (and the teachers that would be retrained) with
    an estimate of their training time from the stored runs; train, render and write nothing.
    """
    prof = get_profile(profile)
    for name in also:
        get_profile(name)  # an unknown name fails before any work
    if tasks in (None, ""):
        task_list = list(prof.tasks)
    elif tasks == "all":
        task_list = list(prof.all_tasks)
    else:
        task_list = [t.strip() for t in str(tasks).split(",") if t.strip()]
        unknown = [t for t in task_list if t not in prof.budgets]
        if unknown:
            raise ValueError(f"profile {profile!r} has no budget for task(s) {', '.join(unknown)}; "
                             f"choose from {', '.join(prof.budgets)}")
    if jobs is not None and jobs < 1:
        raise ValueError(f"--jobs must be >= 1, got {jobs}")
    if executor not in ("local", "ray"):
        raise ValueError(f"unknown executor {executor!r}; choose local or ray")
    if executor == "ray" and jobs is not None:
        raise ValueError("--jobs is for the local executor; on Ray each run takes one GPU (or one CPU) of the cluster")
    if executor == "ray" and not dry_run and only != "notebooks":
        from .cluster import import_ray

        import_ray()  # not installed: one line, before any work
    if seeds is not None and seeds < 1:
        raise ValueError(f"--seeds must be >= 1, got {seeds}")
    seed_list = list(range(seeds)) if seeds else list(prof.seeds)
    results_dir = Path(results) / profile
    store = ResultStore(results_dir / "runs")
    work = Path(work_dir) / profile
    configs = prof.all_configs(task_list, seed_list)  # validates every config before any training
    if dry_run:
        return _dry_run(profile, task_list, seed_list, configs, store, work)
    if only in (None, "sweeps"):
        note = _emulated_bf16(profile, [c for c in configs if store.get(c.run_id()) is None])
        if note:
            print(f"[batch] note: {note}")

    meta_path = results_dir / "batch.json"
    old = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    import torch

    machine = f"{platform.machine()}, {os.cpu_count()} CPU cores" + (
        f", {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else "")
    # only what a rerun on unchanged records reproduces exactly: no render times, no render date
    meta = {"profile": profile, "tasks": task_list, "seeds": seed_list,
            "command": f"python -m movprune batch --profile {profile}" + (f" --tasks {tasks}" if tasks else "")
            + (f" --seeds {seeds}" if seeds else ""),
            "sweeps": old.get("sweeps", {}), "training": old.get("training") or _legacy_training(old),
            "notebooks": old.get("notebooks", {})}
    ok, failed_now = True, {}
    if only in (None, "sweeps"):
        print(f"[batch] profile {profile}: {len(configs)} runs ({', '.join(task_list)}; seeds {seed_list})")
        t0 = time.time()
        if executor == "ray":
            from .cluster import run_sweeps_ray

            jobs = "ray"
            sweeps = run_sweeps_ray(configs, store, work, address=address)
        else:
            jobs = jobs or default_jobs()
            print(f"[batch] {jobs} parallel run(s)")
            sweeps = run_sweeps(configs, store, work, jobs=jobs)
        if sweeps["trained"] or sweeps["failed"] or sweeps.get("skipped"):
            # a sweep that found every run stored was a lookup: batch.json and the page stay what a
            # notebooks-only rendering writes, so the main command re-renders a complete store unchanged
            meta["sweeps"] = sweeps
        failed_now = sweeps["failed"]
        if sweeps["trained"] or sweeps["failed"]:
            meta["training"] = {"trained": sweeps["trained"], "wall_s": round(time.time() - t0, 1), "jobs": jobs,
                                "machine": machine, "torch": torch.__version__,
                                "finished_at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
        ok &= not sweeps["failed"]
    if only in (None, "notebooks"):
        t0 = time.time()
        render = page_tasks(prof, task_list, tasks in (None, ""), {r.get("task") for r in store.records()})
        tasks_param = ",".join(render)
        meta["notebooks"] = run_notebooks(profile, results_dir, tasks_param, notebooks_dir=notebooks_dir)
        print(f"[batch] notebooks: {time.time() - t0:.0f}s")
        ok &= all(v is None for v in meta["notebooks"].values())
    results_dir.mkdir(parents=True, exist_ok=True)
    meta_path.write_text(json.dumps(meta, indent=1) + "\n")
    have = {r.get("run_id") for r in store.records()}
    shown = page_tasks(prof, task_list, tasks in (None, ""), {r.get("task") for r in store.records()})
    shown_configs = configs if shown == task_list else prof.all_configs(shown, seed_list)
    readme = write_readme(results_dir, meta, missing=[c for c in shown_configs if c.run_id() not in have])
    write_index(Path(results))
    failed = list(failed_now) + [k for k, v in meta["notebooks"].items() if v]
    print(f"[batch] wrote {readme}; " + ("all succeeded" if not failed else f"FAILED: {', '.join(failed)}"))
    for name in also if only != "sweeps" else ():  # --only sweeps renders nothing
        n = len(list((Path(results) / name / "runs").glob("*.json")))
        print(f"[batch] profile {name}: re-rendering its {n} stored runs (notebooks only; "
              f"`python -m movprune batch --profile {name}` trains its missing runs)")
        ok &= run_batch(name, results=results, work_dir=work_dir, only="notebooks", notebooks_dir=notebooks_dir) == 0
    return 0 if ok else 1
