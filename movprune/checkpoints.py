"""A run's checkpoints: the newest complete one to resume from, the training time it kept, and the
check that a run folder belongs to the config resuming in it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

from .config import _NOT_IN_ID, LEGACY_VALUES, RunConfig

TRAIN_TIME_FILE = "movprune_train_time.json"


def last_good_checkpoint(output_dir: Path) -> Optional[str]:
    """Newest ``checkpoint-N`` folder that has a complete trainer state, else None."""
    if not output_dir.is_dir():
        return None
    ckpts = sorted((p for p in output_dir.glob("checkpoint-*") if p.name.split("-")[-1].isdigit()),
                   key=lambda p: int(p.name.split("-")[-1]), reverse=True)
    for ckpt in ckpts:
        try:
            state = json.loads((ckpt / "trainer_state.json").read_text())
            weights = list(ckpt.glob("*.safetensors"))
            if (state.get("global_step") == int(ckpt.name.split("-")[-1]) and weights
                    and all(_safetensors_complete(w) for w in weights)):
                return str(ckpt)
        except (OSError, ValueError):
            pass
        print(f"warning: skipping incomplete checkpoint {ckpt}")
    return None



def checkpoint_train_time(checkpoint) -> Optional[float]:
    """Seconds of training that led up to ``checkpoint`` (written beside it by the run that saved it),
    or None for a checkpoint saved without it."""
    try:
        return float(json.loads((Path(checkpoint) / TRAIN_TIME_FILE).read_text())["train_time_s"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def check_run_folder(out_dir: Path, config: RunConfig) -> None:
    """Refuse to resume in a run folder whose ``run_config.json`` is another config.

    The folder name is the run id, so this only happens when a folder was edited, copied or
    reused by hand (or on a hash collision); resuming its checkpoints would silently mix runs.
    """
    path = Path(out_dir) / "run_config.json"
    if not path.is_file():
        return
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(saved, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError) as e:  # a write cut short: this run rewrites it
        print(f"warning: unreadable {path} ({type(e).__name__}); rewriting it")
        return
    current = config.to_dict()
    diff = [k for k in current if k not in _NOT_IN_ID and saved.get(k, LEGACY_VALUES.get(k, "<missing>")) != current[k]]
    if diff:
        shown = ", ".join(f"{k} {saved.get(k, '<missing>')!r} != {current[k]!r}" for k in diff[:3])
        raise ValueError(f"run folder {out_dir} belongs to a different config ({shown}); refusing to resume "
                         f"from it: move it aside or use another --work-dir")


def _safetensors_complete(path: Path) -> bool:
    """True when the file is as long as its own header says (catches a write cut short)."""
    try:
        with open(path, "rb") as f:
            n = int.from_bytes(f.read(8), "little")
            header = json.loads(f.read(n))
        end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
        return path.stat().st_size == 8 + n + end
    except (OSError, ValueError, KeyError, TypeError):
        return False


def _is_load_error(e: Exception) -> bool:
    """Errors raised by loading a damaged checkpoint (truncated pickle / safetensors / json)."""
    import pickle

    return isinstance(e, (EOFError, pickle.UnpicklingError, RuntimeError, OSError, ValueError, KeyError))
