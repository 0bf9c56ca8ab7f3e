"""bf16 autocast emulated with fp32 kernels (movprune.bf16) against PyTorch's own bf16 kernels."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from movprune.bf16 import EMULATED, NATIVE, EmulatedBf16Matmuls

BF16 = torch.bfloat16


def _rel(a, b) -> float:
    return float((a.float() - b.float()).norm() / b.float().norm())


def _three_ways(f):
    """f() in fp32, under bf16 autocast (PyTorch's kernels) and under autocast + the emulation."""
    fp32 = f()
    with torch.autocast("cpu", dtype=BF16):
        real = f()
    with EmulatedBf16Matmuls(), torch.autocast("cpu", dtype=BF16):
        emulated = f()
    return fp32, real, emulated


def test_linear_matches_the_bf16_kernel_forward_and_backward():
    """Operands rounded to bf16, products exact in fp32, fp32 accumulation, result rounded to bf16: the
    same arithmetic as the bf16 kernel up to the order of additions, so nearly every output is
    bit-identical, while fp32 differs from both by bf16's rounding (~3e-3)."""
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(64, 96, generator=g)
    w0 = torch.randn(128, 96, generator=g) * 0.1
    b0 = torch.randn(128, generator=g) * 0.1
    grads = {}

    def f():
        x, w, b = (t.clone().requires_grad_() for t in (x0, w0, b0))
        out = F.linear(x, w, b)
        (out.float() ** 2).sum().backward()
        grads.setdefault("all", []).append((x.grad, w.grad, b.grad))
        return out.detach()

    fp32, real, emulated = _three_ways(f)
    assert real.dtype == emulated.dtype == BF16 and fp32.dtype == torch.float32
    assert _rel(emulated, real) < 1e-4 and (emulated == real).float().mean() > 0.99
    assert _rel(fp32, real) > 1e-3  # the comparison can tell fp32 from bf16
    (gx_f, gw_f, gb_f), (gx_r, gw_r, gb_r), (gx_e, gw_e, gb_e) = grads["all"]
    for e, r, f in ((gx_e, gx_r, gx_f), (gw_e, gw_r, gw_f), (gb_e, gb_r, gb_f)):
        assert e.dtype == r.dtype == torch.float32 and _rel(e, r) < 1e-4 < 1e-3 < _rel(f, r)


def test_batched_products_are_emulated_and_nothing_changes_outside_bf16_autocast():
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(3, 16, 40, generator=g), torch.randn(3, 40, 24, generator=g)
    for f in (lambda: torch.matmul(a, b), lambda: a @ b, lambda: torch.bmm(a, b),
              lambda: torch.baddbmm(torch.zeros(3, 16, 24), a, b)):
        fp32, real, emulated = _three_ways(f)
        assert emulated.dtype == BF16 and _rel(emulated, real) < 1e-4 < _rel(fp32, real)
    with EmulatedBf16Matmuls():  # no autocast: plain fp32
        assert torch.equal(torch.matmul(a, b), a @ b) and torch.matmul(a, b).dtype == torch.float32
    with EmulatedBf16Matmuls(), torch.autocast("cpu", dtype=BF16, enabled=False):
        assert torch.matmul(a, b).dtype == torch.float32


def test_tiny_bert_forward_follows_the_bf16_kernels(bert, batch):
    """A whole (tiny) encoder: the emulated logits stay closer to the bf16 kernels' than fp32's are."""
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    fp32, real, emulated = _three_ways(lambda: bert(**inputs).logits.detach())
    assert _rel(emulated, real) < 0.5 * _rel(fp32, real)


def test_training_uses_the_emulation_only_where_bf16_has_no_hardware(tmp_path, monkeypatch):
    """A bf16 run on a CPU without avx512_bf16 / AMX goes through the emulation and its record says so;
    with bf16 hardware (or an fp32 run) the emulation is not entered."""
    from movprune import bf16 as bf16_mod
    from movprune import train
    from movprune.train import RunConfig, run

    seen = []
    original = bf16_mod.EmulatedBf16Matmuls.__torch_function__

    def spy(self, func, types, args=(), kwargs=None):
        if func is F.linear and torch.is_autocast_enabled("cpu"):
            seen.append(func)
        return original(self, func, types, args, kwargs)

    monkeypatch.setattr(bf16_mod.EmulatedBf16Matmuls, "__torch_function__", spy)
    monkeypatch.setattr(train.torch.cuda, "is_available", lambda: False)
    tiny = dict(task="sst2", model="tiny", method="magnitude", remaining=0.5, max_train_examples=32,
                max_eval_examples=16, max_steps=2, batch_size=16, max_length=16, save_steps=2)
    for native, bf16, kernel in ((False, True, EMULATED), (True, True, NATIVE), (False, False, None)):
        monkeypatch.setattr(train, "bf16_native", lambda native=native: native)
        seen.clear()
        cfg = RunConfig(bf16=bf16, seed=int(native) + 2 * int(bf16), **tiny)
        rec = run(cfg, store=tmp_path / "runs", work_dir=tmp_path / "work", progress=False)
        assert rec["versions"]["bf16_kernel"] == kernel
        assert bool(seen) == (kernel == EMULATED)
        assert 0.0 <= rec["metrics"]["accuracy"] <= 100.0


def test_bf16_curves_script_compares_emulated_runs_with_kernel_runs(tmp_path, capsys):
    """scripts/bf16_curves.py: the pre-pruning loss curves of one task and seed, by pair kind; without an
    emulated run it says so in one line and exits 2."""
    import importlib.util
    import json
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "scripts" / "bf16_curves.py"
    spec = importlib.util.spec_from_file_location("bf16_curves", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    runs = tmp_path / "runs"
    runs.mkdir()

    def put(rid, method, curve, kernel=None, **extra):
        rec = {"run_id": rid, "record_version": 1, "task": "sick", "seed": 0, "bf16": True, "distill": False,
               "method": method, "pruning_starts_at": 100, "steps": 300, "loss_curve": curve, "metrics": {},
               "versions": {"bf16_kernel": kernel} if kernel else {}, **extra}
        (runs / f"{rid}.json").write_text(json.dumps(rec))

    base = [[10, 1.0], [50, 0.5], [90, 0.3], [150, 0.9]]
    put("sick-minilm-magnitude_v0.1_local-s0-a", "magnitude", base)
    put("sick-minilm-magnitude_v0.03_local-s0-b", "magnitude", base)  # identical curve: counted once
    put("sick-minilm-l0_lambda100-s0-c", "l0", [[10, 2.0]])  # L0: stochastic from step 0, not comparable
    assert mod.main(["--results", str(tmp_path)]) == 2
    assert "need an emulated" in capsys.readouterr().err
    put("sick-minilm-movement_v0.1_local-s0-d", "movement", [[10, 1.0], [50, 0.502], [90, 0.3], [150, 2.0]],
        kernel=EMULATED)
    assert mod.main(["--results", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "3 runs, 2 distinct loss curves" in out
    row = next(line for line in out.splitlines() if line.startswith("emulated vs kernels"))
    # steps 10, 50, 90 (150 is after pruning starts): mean |d| 0.002 / 3, max 0.002, first at step 50
    assert row.split()[-4:] == ["3", "0.0007", "0.0020", "50"]
