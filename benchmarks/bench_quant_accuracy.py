"""What each int8 scheme of the compact file costs in task accuracy, on real fine-pruned models.

    python benchmarks/bench_quant_accuracy.py checkpoints/<profile>/<run>/final [...]

For every run folder given (a ``final`` folder written by ``python -m movprune run``, next to
its ``run_config.json``), bakes the pruned model, writes it with
``movprune.export.export_compact`` once per int8 scheme (``per_row``, ``per_tensor``), loads
each file back with ``load_compact`` and evaluates it on the run's dev split (its task and
``max_length``). Prints a table and one JSON line: the dev metric of the float model and of
each loaded file, the file's bytes per kept encoder weight, and how many kept weights round
to int8 zero. The dev split is used only to *report* these numbers; nothing is tuned on it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402

import movprune  # noqa: E402
from movprune.data import compute_metrics, get_task, load_task, main_metric, tokenize_task  # noqa: E402
from movprune.export import QUANT_SCHEMES, export_compact, load_compact  # noqa: E402


@torch.inference_mode()
def dev_metric(model, tokenizer, task: str, data, batch_size: int = 128) -> float:
    """The task's main dev metric of ``model`` on the tokenized dev ``data`` (dynamic padding)."""
    collate = transformers.DataCollatorWithPadding(tokenizer)
    preds, labels = [], []
    for start in range(0, len(data), batch_size):
        batch = collate([data[i] for i in range(start, min(start + batch_size, len(data)))])
        labels.append(batch.pop("labels").numpy())
        logits = model(**batch).logits
        preds.append(logits.squeeze(-1).numpy() if get_task(task).kind == "regression"
                     else logits.argmax(-1).numpy())
    return compute_metrics(task, np.concatenate(preds), np.concatenate(labels))[main_metric(task)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", help="run 'final' folders (next to run_config.json)")
    args = ap.parse_args()
    transformers.logging.set_verbosity_error()
    results = []
    for run in map(Path, args.runs):
        cfg_path = run.parent / "run_config.json"
        if not (run / "config.json").is_file() or not cfg_path.is_file():
            print(f"bench_quant_accuracy: error: {run} is not a run's final folder "
                  f"(needs config.json and ../run_config.json)", file=sys.stderr)
            return 2
        cfg = json.loads(cfg_path.read_text())
        model = movprune.bake(movprune.from_pretrained(str(run))).eval()
        tokenizer = transformers.AutoTokenizer.from_pretrained(str(run))
        dev = tokenize_task(load_task(cfg["task"], split="dev"), tokenizer, cfg["max_length"], task=cfg["task"])
        row = {"run": run.parent.name, "task": cfg["task"], "metric": main_metric(cfg["task"]),
               "float": dev_metric(model, tokenizer, cfg["task"], dev)}
        with tempfile.TemporaryDirectory() as tmp:
            for scheme in QUANT_SCHEMES:
                rep = export_compact(model, Path(tmp) / "m.mvp", quantization=scheme)
                loaded = load_compact(Path(tmp) / "m.mvp")
                row["density"] = round(rep["density"], 4)
                row[scheme] = {
                    "dev": dev_metric(loaded, tokenizer, cfg["task"], dev),
                    "bytes_per_kept_weight": round(rep["bytes_per_kept_weight"], 3),
                    "kept_quantized_to_zero": rep["kept_weights_quantized_to_zero"],
                }
        results.append(row)
        print(f"{row['run'][:58]:<58} v={row['density']:<7} {row['metric']} float {100 * row['float']:6.2f}  "
              + "  ".join(f"{s} {100 * row[s]['dev']:6.2f} ({row[s]['bytes_per_kept_weight']:.3f} B/kept, "
                          f"{row[s]['kept_quantized_to_zero']} ->0)" for s in QUANT_SCHEMES), flush=True)
    print(json.dumps({"quant_accuracy": results, "torch": torch.__version__}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
