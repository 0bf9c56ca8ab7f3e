"""Tests for movprune.export: compact sparse int8 file round trip."""

import os

import pytest
import torch

from movprune.export import (
    MAGIC,
    dequantize_rowwise,
    export_compact,
    find_target_linears,
    load_compact,
    quantize_model_weights,
    quantize_rowwise,
    quantize_weight,
    read_quantized,
)
from pruned_helpers import inputs, random_prune_, tiny_bert


def test_quantize_rowwise_scheme():
    w = torch.tensor([[0.0, 1.0, -2.54], [0.0, 0.0, 0.0], [1e-6, 0.0, -3e-7]])
    q, s = quantize_rowwise(w)
    assert q.dtype == torch.int8 and s.dtype == torch.float16
    assert q[0].tolist()[2] == -127 and q[0, 0] == 0
    assert torch.all(q[1] == 0) and s[1] == 0
    assert s[2] > 0 and q[2, 2] != 0  # tiny rows do not collapse to zero
    assert torch.equal(dequantize_rowwise(q, s) == 0, q == 0)
    assert (dequantize_rowwise(q, s)[0] - w[0]).abs().max() <= s[0].float() / 2 + 1e-6


def test_quantize_per_tensor_scheme():
    w = torch.tensor([[0.0, 1.0, -2.54], [0.0, 0.0, 0.0], [0.004, 0.0, -0.03]])
    q, s = quantize_weight(w, "per_tensor")
    assert q.dtype == torch.int8 and s.shape == (1,) and s.dtype == torch.float16
    assert s[0] == torch.tensor(2.54 / 127, dtype=torch.float16)
    assert q[0].tolist() == [0, 50, -127] and torch.all(q[1] == 0)
    # one scale for the whole matrix: the small row keeps few levels, and 0.004 < step/2 rounds to 0
    assert q[2].tolist() == [0, 0, -1]
    qr, sr = quantize_weight(w, "per_row")
    assert torch.equal(qr, quantize_rowwise(w)[0]) and sr.shape == (3,)
    assert (dequantize_rowwise(q, s) - w).abs().max() <= s[0].float() / 2 + 1e-6
    assert torch.equal(quantize_weight(torch.zeros(2, 2), "per_tensor")[1], torch.zeros(1, dtype=torch.float16))
    with pytest.raises(ValueError, match="quantization must be one of"):
        quantize_weight(w, "per_column")


@pytest.mark.parametrize("quantization", ["per_row", "per_tensor"])
@pytest.mark.parametrize("remaining", [0.10, 0.03])
def test_round_trip_bit_exact(tmp_path, remaining, quantization):
    model = random_prune_(tiny_bert(), remaining)
    path = tmp_path / "m.mvp"
    report = export_compact(model, path, quantization=quantization)
    assert report["file_bytes"] == os.path.getsize(path)
    assert report["quantization"] == f"int8-sym-{quantization.replace('_', '-')}-fp16scale"

    # int8 values and scales are bit-exact
    stored = read_quantized(path)
    targets = find_target_linears(model)
    assert set(stored) == {f"{n}.weight" for n in targets}
    for name, lin in targets.items():
        q, s = quantize_weight(lin.weight, quantization)
        q2, s2 = stored[f"{name}.weight"]
        assert torch.equal(q, q2) and torch.equal(s, s2)

    loaded = load_compact(path)
    assert type(loaded) is type(model)
    ref = quantize_model_weights(model, quantization=quantization)
    for (k, v), (k2, v2) in zip(ref.state_dict().items(), loaded.state_dict().items()):
        assert k == k2 and torch.equal(v, v2), k
    x = inputs()
    with torch.no_grad():
        out, ref_out, orig = loaded(**x).logits, ref(**x).logits, model(**x).logits
    assert torch.allclose(out, ref_out, atol=1e-5, rtol=0)
    assert torch.allclose(out, orig, atol=5e-2)  # quantization error stays small


def test_size_report(tmp_path):
    model = random_prune_(tiny_bert(), 0.10)
    report = export_compact(model, tmp_path / "m.mvp")
    fp32 = sum(v.numel() * 4 for v in model.state_dict().values())
    assert report["fp32_state_dict_bytes"] == fp32
    assert report["file_bytes"] < fp32 / 2
    kept = sum(int(torch.count_nonzero(l.weight)) for l in find_target_linears(model).values())
    assert report["kept_weights"] == kept
    assert report["encoder_bytes"] == sum(report["parts"][p] for p in ("index", "values", "scales"))
    assert sum(report["parts"].values()) == report["file_bytes"]
    assert 0.5 < report["bytes_per_kept_weight"] < 3.0
    assert report["bytes_per_kept_weight"] == pytest.approx(report["encoder_bytes"] / kept)


def test_float32_others_and_custom_targets(tmp_path):
    model = random_prune_(tiny_bert(), 0.10)
    targets = [r"intermediate\.dense$"]
    path = tmp_path / "m.mvp"
    report = export_compact(model, path, target_modules=targets, other_dtype="float32")
    assert report["target_modules"] == 2
    loaded = load_compact(path)
    ref = quantize_model_weights(model, target_modules=targets, other_dtype="float32")
    for k, v in ref.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k]), k
    # untouched layers are exactly the original fp32 weights
    w = model.bert.encoder.layer[0].attention.self.query.weight
    assert torch.equal(loaded.bert.encoder.layer[0].attention.self.query.weight, w)


@pytest.mark.parametrize("quantization", ["per_row", "per_tensor"])
def test_int8_dynamic_runtime(tmp_path, quantization):
    model = random_prune_(tiny_bert(), 0.10)
    path = tmp_path / "m.mvp"
    export_compact(model, path, quantization=quantization)
    qmodel = load_compact(path, runtime="int8_dynamic")
    lin = qmodel.bert.encoder.layer[1].intermediate.dense
    q, s = read_quantized(path)["bert.encoder.layer.1.intermediate.dense.weight"]
    assert torch.equal(lin.weight().int_repr(), q)
    if quantization == "per_tensor":
        assert lin.weight().q_scale() == float(s[0])
    x = inputs()
    with torch.no_grad():
        ref = quantize_model_weights(model, quantization=quantization)(**x).logits
        assert torch.allclose(qmodel(**x).logits, ref, atol=5e-2)


def test_per_tensor_values_compress_better_when_rows_differ(tmp_path):
    """Rows with different ranges: per-tensor values take fewer bytes than per-row ones."""
    model = random_prune_(tiny_bert(), 0.10)
    with torch.no_grad():
        for lin in find_target_linears(model).values():
            rows = lin.weight.shape[0]
            lin.weight.mul_(torch.logspace(-1, 0, rows)[:, None])  # row ranges spread over 10x
    row = export_compact(model, tmp_path / "r.mvp", quantization="per_row")
    tensor = export_compact(model, tmp_path / "t.mvp", quantization="per_tensor")
    assert tensor["parts"]["values"] < 0.9 * row["parts"]["values"]
    assert tensor["parts"]["scales"] < row["parts"]["scales"]
    assert tensor["bytes_per_kept_weight"] < row["bytes_per_kept_weight"]
    with pytest.raises(ValueError, match="quantization must be one of"):
        export_compact(model, tmp_path / "x.mvp", quantization="int4")
    assert not (tmp_path / "x.mvp").exists()


def test_bad_files(tmp_path):
    bad = tmp_path / "bad.bin"
    bad.write_bytes(b"not a movprune file at all")
    with pytest.raises(ValueError, match="not a movprune"):
        load_compact(bad)

    model = random_prune_(tiny_bert(), 0.10)
    good = tmp_path / "good.mvp"
    export_compact(model, good)
    data = bytearray(good.read_bytes())

    wrong_version = tmp_path / "v.mvp"
    wrong_version.write_bytes(bytes(data[:8]) + (99).to_bytes(4, "little") + bytes(data[12:]))
    with pytest.raises(ValueError, match="version 99"):
        load_compact(wrong_version)

    truncated = tmp_path / "t.mvp"
    truncated.write_bytes(bytes(data[: len(data) // 2]))
    with pytest.raises(ValueError):
        load_compact(truncated)

    corrupt = tmp_path / "c.mvp"
    data[len(data) - 100] ^= 0xFF
    corrupt.write_bytes(bytes(data))
    with pytest.raises(ValueError):
        load_compact(corrupt)

    assert good.read_bytes()[:8] == MAGIC


def _baked(model, remaining=0.1):
    import movprune

    pruner = movprune.sparsify(model, movprune.PruningConfig(method="magnitude", remaining=remaining))
    pruner.update(100, 100)
    return movprune.bake(model)


@pytest.mark.parametrize("family", ["bert", "distilbert", "mpnet"])
def test_core_pipeline_families(tmp_path, make_model, batch, get_logits, family):
    model = _baked(make_model(family), 0.1).eval()
    path = tmp_path / "m.mvp"
    report = export_compact(model, path)
    assert report["target_modules"] == 12  # 6 per layer, 2 layers
    assert report["density"] == pytest.approx(0.1, abs=0.02)
    loaded = load_compact(path)
    assert type(loaded).__name__ == type(model).__name__
    torch.testing.assert_close(
        get_logits(loaded, batch), get_logits(quantize_model_weights(model), batch), atol=1e-5, rtol=0
    )


def test_masked_model_is_rejected(tmp_path, bert):
    import movprune

    movprune.sparsify(bert, movprune.PruningConfig(method="magnitude", remaining=0.1))
    with pytest.raises(ValueError, match="bake"):
        export_compact(bert, tmp_path / "m.mvp")


def _saved_pruned_run(tmp_path):
    """A tiny BERT with magnitude masks at v = 10%, saved like a run's final/ folder."""
    import movprune

    model = tiny_bert()
    movprune.sparsify(model, movprune.PruningConfig(method="magnitude", remaining=0.1)).update(100, 100)
    folder = tmp_path / "final"
    movprune.save_pretrained(model, str(folder))
    return model, folder


@pytest.mark.parametrize("quantization", ["per_row", "per_tensor"])
def test_cli_export_writes_a_loadable_file(tmp_path, capsys, quantization):
    import movprune
    from movprune.cli import main

    model, folder = _saved_pruned_run(tmp_path)
    out = tmp_path / "m.mvp"
    assert main(["export", str(folder), str(out), "--quantization", quantization]) == 0
    line = capsys.readouterr().out
    assert f"wrote {out}" in line and "bytes per kept weight" in line and quantization in line
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("m.mvp")] == ["m.mvp"]  # no temp file left
    ref = quantize_model_weights(movprune.bake(model), quantization=quantization)
    loaded = load_compact(out)
    x = inputs()
    with torch.no_grad():
        assert torch.equal(loaded(**x).logits, ref(**x).logits)


def test_cli_export_refuses_bad_input_and_keeps_existing_files(tmp_path, capsys):
    from movprune.cli import main

    _, folder = _saved_pruned_run(tmp_path)
    out = tmp_path / "m.mvp"
    out.write_bytes(b"keep me")
    cases = [
        (["export", str(folder), str(out)], "exists; pass --force"),
        (["export", str(tmp_path / "nope"), str(tmp_path / "x.mvp")], "does not exist"),
        (["export", str(tmp_path), str(tmp_path / "x.mvp")], "has no movprune_model.safetensors"),
        (["export", str(folder), str(tmp_path / "no" / "x.mvp")], "output folder"),
        (["export", str(folder), str(tmp_path / "x.mvp"), "--quantization", "int4"], "invalid choice"),
    ]
    for argv, message in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], (argv, err)
    assert out.read_bytes() == b"keep me" and not (tmp_path / "x.mvp").exists()
    assert main(["export", str(folder), str(out), "--force"]) == 0
    assert out.read_bytes()[:8] == MAGIC
