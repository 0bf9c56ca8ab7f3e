"""diagnose: a collapsed representation is told apart from a healthy one."""

import os

import torch
import transformers

from movprune.cli import main
from movprune.diagnose import format_report, hidden_spread, linear_offsets, prediction_histogram

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _tiny():
    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                     intermediate_size=64, num_labels=2)
    model = transformers.BertForSequenceClassification(config)
    batch = {"input_ids": torch.randint(5, 100, (16, 12)), "attention_mask": torch.ones(16, 12, dtype=torch.long)}
    batch["attention_mask"][:4, 8:] = 0  # some padding, which must not count
    return model, batch


def test_healthy_and_collapsed_models():
    model, batch = _tiny()
    healthy = hidden_spread(model, batch)
    assert [r["layer"] for r in healthy] == [0, 1, 2]
    assert healthy[-1]["spread"] > 0.3 * healthy[0]["spread"]
    assert "collapsed" not in format_report({"layers": healthy, "predictions": [8, 8], "examples": 16})
    # a huge constant added by the last feed-forward block swamps its LayerNorm: every token looks alike
    with torch.no_grad():
        model.bert.encoder.layer[1].output.dense.bias.copy_(1e5 * torch.randn(32))
    collapsed = hidden_spread(model, batch)
    assert collapsed[1]["spread"] == healthy[1]["spread"]  # layer 1 untouched
    assert collapsed[-1]["spread"] < 1e-3 * healthy[-1]["spread"]
    assert collapsed[-1]["relative_spread"] < 1e-3
    offsets = linear_offsets(model, batch)
    assert len(offsets) == 12  # 6 targeted linears per layer
    culprit = offsets["bert.encoder.layer.1.output.dense"]
    assert culprit["offset"] > 1e4 and culprit["spread"] < 1e-2 * culprit["offset"]
    assert offsets["bert.encoder.layer.0.output.dense"]["offset"] < 1e3
    hist = prediction_histogram(model, batch)
    assert sum(hist) == 16 and max(hist) == 16  # one class for every example
    assert "collapsed" in format_report({"layers": collapsed, "predictions": hist, "examples": 16})


def test_diagnose_cli_on_a_saved_model(tmp_path, capsys):
    from movprune.models import minilm_path

    model, _ = _tiny()
    model.config.vocab_size = 100
    model.save_pretrained(tmp_path / "m")
    tok = transformers.AutoTokenizer.from_pretrained(minilm_path())
    tok.save_pretrained(tmp_path / "m")
    # MiniLM's tokenizer ids exceed the tiny vocabulary: give the model a matching embedding size
    model.resize_token_embeddings(len(tok))
    model.save_pretrained(tmp_path / "m")
    assert main(["diagnose", str(tmp_path / "m"), "--task", "sst2", "--examples", "8"]) == 0
    out = capsys.readouterr().out
    assert "spread" in out and "predicted classes over 8 eval examples" in out
    assert main(["diagnose", str(tmp_path / "nothing")]) == 2
    assert main(["diagnose", str(tmp_path / "m"), "--task", "squad"]) == 2
