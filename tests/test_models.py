"""Model names and folders: the MiniLM alias override and float32 loading of half-precision files."""

import dataclasses
import os

import pytest
import torch

from movprune import models

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def test_minilm_dir_override(tmp_path, monkeypatch):
    real = models.minilm_path()
    monkeypatch.setenv("MOVPRUNE_MINILM_DIR", real)
    assert models.resolve("minilm") == real
    monkeypatch.setenv("MOVPRUNE_MINILM_DIR", str(tmp_path))  # no config.json there
    with pytest.raises(models.ModelError, match="MOVPRUNE_MINILM_DIR=.* is not a model folder") as e:
        models.resolve("minilm")
    assert "\n" not in str(e.value)


def test_half_precision_folder_loads_as_float32(tmp_path):
    import transformers

    config = transformers.BertConfig(vocab_size=64, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                     intermediate_size=64, num_labels=2)
    torch.manual_seed(0)
    half = transformers.BertForSequenceClassification(config).half()
    half.save_pretrained(tmp_path)
    loaded = models.load_model(str(tmp_path), "classification", num_labels=2)
    assert {p.dtype for p in loaded.parameters()} == {torch.float32}
    w = "bert.encoder.layer.0.intermediate.dense.weight"
    assert torch.equal(loaded.state_dict()[w], half.state_dict()[w].float())


def test_length_grouping_uses_a_real_training_argument():
    from transformers import TrainingArguments

    from movprune.train import _length_grouping

    (name, value), = _length_grouping(True).items()
    assert name in {f.name for f in dataclasses.fields(TrainingArguments)} and value in ("group_by_length", True)
    (name, value), = _length_grouping(False).items()
    args = TrainingArguments(output_dir="unused", use_cpu=True, **{name: value})
    assert getattr(args, name) in ("random", False)
