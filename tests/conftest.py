"""Shared fixtures: tiny randomly initialised encoders (no downloads), a batch of token ids.

Every model here has 2 layers, hidden size 32, 2 heads and an FFN of 64, so a forward pass takes
milliseconds. Dropout is off, so train-mode forwards differ only where a mask is stochastic (L0).
"""

from __future__ import annotations

import pytest
import torch
import transformers

VOCAB, HIDDEN, LAYERS, HEADS, FFN, MAX_POS = 100, 32, 2, 2, 64, 64

# per family: (config class, model class, config kwargs)
FAMILIES = {
    "bert": ("BertConfig", "BertForSequenceClassification",
             dict(hidden_size=HIDDEN, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
                  intermediate_size=FFN, max_position_embeddings=MAX_POS,
                  hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)),
    "roberta": ("RobertaConfig", "RobertaForSequenceClassification",
                dict(hidden_size=HIDDEN, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
                     intermediate_size=FFN, max_position_embeddings=MAX_POS + 2,
                     hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)),
    "distilbert": ("DistilBertConfig", "DistilBertForSequenceClassification",
                   dict(dim=HIDDEN, n_layers=LAYERS, n_heads=HEADS, hidden_dim=FFN,
                        max_position_embeddings=MAX_POS, dropout=0.0, attention_dropout=0.0,
                        seq_classif_dropout=0.0)),
    "mpnet": ("MPNetConfig", "MPNetForSequenceClassification",
              dict(hidden_size=HIDDEN, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
                   intermediate_size=FFN, max_position_embeddings=MAX_POS + 2,
                   hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)),
}


def tiny_model(family: str = "bert", seed: int = 0) -> torch.nn.Module:
    """A fresh tiny sequence classifier of ``family`` with random weights (eval mode)."""
    config_cls, model_cls, kwargs = FAMILIES[family]
    config = getattr(transformers, config_cls)(vocab_size=VOCAB, num_labels=2, **kwargs)
    torch.manual_seed(seed)
    model = getattr(transformers, model_cls)(config)
    return model.eval()


@pytest.fixture
def make_model():
    """Factory: ``make_model(family="bert", seed=0)`` -> a fresh tiny model."""
    return tiny_model


@pytest.fixture
def bert():
    """A fresh tiny BERT classifier (eval mode)."""
    return tiny_model("bert")


@pytest.fixture
def batch():
    """``{"input_ids", "attention_mask", "labels"}``: 4 sequences of 12 tokens (ids >= 3)."""
    g = torch.Generator().manual_seed(1234)
    input_ids = torch.randint(3, VOCAB, (4, 12), generator=g)
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, 9:] = 0
    return {"input_ids": input_ids, "attention_mask": attention_mask,
            "labels": torch.tensor([0, 1, 1, 0])}


def _logits(model, batch) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits


@pytest.fixture
def get_logits():
    """``get_logits(model, batch)`` -> logits without grad (the model's current train/eval mode)."""
    return _logits
