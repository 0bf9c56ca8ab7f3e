"""The distillation teacher of a run: the model it learns from, and which run trained that model.

A distilled run's teacher is the dense run with the same data and budget
(:meth:`RunConfig.teacher_config`), trained and cached when its model is missing, or a folder given
as ``teacher_dir``. Beside every final model lies a small result file (its run id and score), so a
student's record names the score of the model that actually taught it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from . import data as data_mod
from . import models
from .config import RunConfig, final_model_dir
from .records import predicts_one_class
from .pruner import from_pretrained
from .store import ResultStore

RESULT_FILE = "movprune_result.json"  # beside a run's final model: the run id and score of *that* model
_RESULT_KEYS = ("run_id", "main_metric", "score", "remaining", "device", "finished_at")


def write_result_file(final_dir: Path, record: dict) -> None:
    """Write the run's id, score and finish time beside its final model (atomically).

    A stored record and a model folder can part ways: a teacher retrained on another machine, or with the
    record kept from an earlier run. The file travels with the model, so a distilled run names the score of
    the teacher that actually taught it.
    """
    tmp = final_dir / (RESULT_FILE + ".tmp")
    tmp.write_text(json.dumps({k: record.get(k) for k in _RESULT_KEYS}, indent=1))
    os.replace(tmp, final_dir / RESULT_FILE)


def teacher_provenance(config: RunConfig, store, work_dir) -> dict:
    """The teacher of a distilled ``config``, for its record: run id, score, device, finish time.

    Read from the result file beside the teacher's model (written by :func:`movprune.train.run`); from the store's
    record when the folder has none (a model saved before that file existed, or ``teacher_dir`` given by
    hand, which may hold any model: then only ``source`` is known). ``source`` says which.
    """
    store = ResultStore(store) if not isinstance(store, ResultStore) else store
    if config.teacher_dir:
        path, run_id = Path(config.teacher_dir), None
    else:
        tconf = config.teacher_config()
        path, run_id = final_model_dir(tconf, work_dir), tconf.run_id()
    info, source = {}, "unknown"
    try:
        info, source = json.loads((path / RESULT_FILE).read_text()), "model folder"
    except (OSError, ValueError):
        record = store.get(run_id) if run_id else None
        if record is not None:
            info, source = record, "store"
    out = {k: info.get(k) for k in _RESULT_KEYS}
    out["run_id"] = out["run_id"] or run_id
    return {**out, "source": source}


def load_teacher(config: RunConfig, store, work_dir, tokenizer, progress=True):
    """The dense teacher: ``config.teacher_dir`` if given, else the cached dense run (trained if missing)."""
    if config.teacher_dir:
        path = Path(config.teacher_dir)
    else:
        tconf = config.teacher_config()
        path = final_model_dir(tconf, work_dir)
        if not (path / "movprune_model.safetensors").is_file():
            from .train import run

            if progress:
                print(f"training the distillation teacher {tconf.run_id()}")
            run(tconf, store, work_dir, force=True, progress=progress)
        store = ResultStore(store) if not isinstance(store, ResultStore) else store
        record = store.get(tconf.run_id())
        if record is not None and predicts_one_class(record):  # tiny smoke models do; a real teacher should not
            import warnings

            warnings.warn(f"the distillation teacher {tconf.run_id()} predicts one class "
                          f"({record.get('main_metric')} {record.get('score')}): its student learns a constant")
    if not path.is_dir():
        raise ValueError(f"teacher folder {path} does not exist")
    from transformers import AutoTokenizer

    try:
        teacher_tok = AutoTokenizer.from_pretrained(str(path))
    except (OSError, ValueError):
        teacher_tok = None
    if teacher_tok is not None and teacher_tok.get_vocab() != tokenizer.get_vocab():
        raise ValueError(f"teacher {path} uses a different vocabulary than the student model {config.model!r}")
    if (path / "movprune_model.safetensors").is_file():
        teacher = from_pretrained(str(path))
    else:
        kind = data_mod.get_task(config.task).kind
        teacher = models.load_model(str(path), kind, data_mod.get_task(config.task).num_labels)
    teacher.eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher
