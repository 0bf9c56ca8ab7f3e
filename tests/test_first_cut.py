"""scripts/first_cut.py: the first cut of movement pruning, on a tiny random BERT and a few SST-2 batches."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(not (REPO.parent / "shared" / "data").is_dir(), reason="needs ../shared/data")


def _script():
    spec = importlib.util.spec_from_file_location("first_cut", REPO / "scripts" / "first_cut.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _checkpoint(tmp_path, scores):
    """A warm-up checkpoint as the Trainer writes it: the masked model's state and the run's config."""
    from safetensors.torch import save_file

    from movprune import models
    from movprune.pruner import sparsify
    from movprune.train import RunConfig

    cfg = RunConfig(task="sst2", model="tiny", method="movement", remaining=0.1, batch_size=8, max_length=32)
    model = models.load_model("tiny", "classification", 2, 0)
    sparsify(model, cfg.pruning_config())
    for m in model.modules():
        if hasattr(m, "parametrizations") and "weight" in m.parametrizations:
            p = m.parametrizations.weight
            p[0].scores.data = scores(p.original.detach())
    ck = tmp_path / "ck"
    ck.mkdir()
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(ck / "model.safetensors"))
    (ck / "run_config.json").write_text(json.dumps(cfg.to_dict()))
    return ck


def test_scores_equal_to_abs_w_cut_like_magnitude(tmp_path):
    fc = _script()
    out = fc.analyze(_checkpoint(tmp_path, lambda w: w.abs()), "sst2", v=0.9)
    assert out["movement, v = 0.9"] == pytest.approx(out["magnitude, v = 0.9"])  # the scores are read back
    assert out["movement's 10% scaled by 0"] == pytest.approx(out["movement, v = 0.9"])
    assert out["movement, v = 0.9"] != pytest.approx(out["random, v = 0.9"])
    assert all(torch.isfinite(torch.tensor(v)) for v in out.values())


def test_a_checkpoint_of_another_run_is_refused(tmp_path):
    fc = _script()
    ck = _checkpoint(tmp_path, lambda w: w.abs())
    cfg = json.loads((ck / "run_config.json").read_text())
    (ck / "run_config.json").write_text(json.dumps({**cfg, "method": "magnitude"}))  # no scores in this one
    assert fc.main(["analyze", str(ck), "--task", "sst2"]) == 2


def test_warmup_trains_the_stored_minilm_run():
    """The warm-up is the start of the very run whose record is committed (same run id, same config)."""
    fc = _script()
    assert fc.minilm_config("sick", 0.1).run_id() == "sick-minilm-movement_v0.1_local-s0-e363385609"
    assert (REPO / "results" / "minilm" / "runs" / "sick-minilm-movement_v0.1_local-s0-e363385609.json").is_file()
    with pytest.raises(ValueError, match="no local movement run of sick at 0.2"):
        fc.minilm_config("sick", 0.2)
