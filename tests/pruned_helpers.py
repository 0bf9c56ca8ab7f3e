"""Helpers shared by the export and sparse-inference tests: a tiny BERT, random pruning, inputs."""

import torch
from transformers import BertConfig, BertForSequenceClassification

from movprune.export import find_target_linears


def tiny_bert(seed: int = 0, random_biases: bool = False) -> BertForSequenceClassification:
    """A 2-layer BERT classifier (hidden 64, vocabulary 100) in eval mode.

    ``random_biases``: non-zero biases on the targeted linears (makes bias folding observable).
    """
    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=100, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                     intermediate_size=128, max_position_embeddings=64, num_labels=2)
    model = BertForSequenceClassification(cfg).eval()
    if random_biases:
        with torch.no_grad():
            for lin in find_target_linears(model).values():
                lin.bias.normal_(0, 0.5)
    return model


@torch.no_grad()
def random_prune_(model, remaining: float, seed: int = 0):
    """Zero all but a random ``remaining`` fraction of every targeted weight (in place)."""
    g = torch.Generator().manual_seed(seed)
    for lin in find_target_linears(model).values():
        lin.weight.mul_(torch.rand(lin.weight.shape, generator=g) < remaining)
    return model


def inputs(batch: int = 3, length: int = 16, seed: int = 1) -> dict:
    """Random token ids with the second half of the first row padded."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, 100, (batch, length), generator=g)
    mask = torch.ones_like(ids)
    mask[0, length // 2:] = 0
    return {"input_ids": ids, "attention_mask": mask}
