"""SQuAD v1.1: loading, feature preparation, answer extraction and the official metrics.

Loading (:func:`load_squad`) looks for data like :mod:`movprune.data` does (``data_dir`` argument,
``$MOVPRUNE_DATA_DIR``, ``../shared/data`` next to the repository, then the Hugging Face hub's
``squad`` data set), in the ``squad/`` subfolder of a local data folder:

* ``squad/train-v1.1.json`` and ``squad/dev-v1.1.json`` both present: the official split.
* only ``squad/dev-v1.1.json`` present (this project's offline copy): a deterministic
  **article-level** split of the dev file. Article titles are sorted, and every 4th title
  (sorted positions 3, 7, 11, ...) goes to ``eval``, the rest to ``train``. On the official dev file
  (48 articles, 10,570 questions) that is 36 articles / 8,001 questions for ``train`` and
  12 articles / 2,569 questions for ``eval``. No article is on both sides, so ``eval`` scores
  measure generalisation to unseen articles. ``split="all"`` returns the whole dev file.

Examples are dicts ``{"id", "title", "context", "question", "answers": {"text": [...],
"answer_start": [...]}}`` (the hub's layout).

Features: :func:`prepare_train_features` and :func:`prepare_eval_features` cut each
(question, context) pair into windows of ``max_length`` tokens overlapping by ``doc_stride`` tokens,
as ``datasets.Dataset``s with no padding (pad batches with
``transformers.DataCollatorWithPadding``).
:func:`postprocess_predictions` turns start/end logits back into answer texts, and
:func:`squad_metrics` scores them exactly like the official SQuAD v1.1 evaluation script.
"""

from __future__ import annotations

import collections
import json
import re
import string
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from .data import _SOURCE_NAMES, DataError, resolve_data_dir, subsample

__all__ = [
    "EVAL_EVERY",
    "split_articles",
    "flatten_articles",
    "load_squad",
    "prepare_train_features",
    "prepare_eval_features",
    "postprocess_predictions",
    "normalize_answer",
    "exact_match_score",
    "f1_score",
    "squad_metrics",
]

EVAL_EVERY = 4  # offline split: every 4th article (by sorted title) is held out for eval
_TRAIN_FILE, _DEV_FILE = "train-v1.1.json", "dev-v1.1.json"
_HUB_SPLITS = {"train": "train", "eval": "validation", "all": "validation"}
_SPLIT_ALIASES = {"dev": "eval", "validation": "eval", "val": "eval"}


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------


def split_articles(articles: Sequence[Mapping], every: int = EVAL_EVERY) -> tuple[list, list]:
    """Split SQuAD articles into ``(train, eval)`` by title.

    Distinct titles are sorted; titles at sorted positions ``every-1, 2*every-1, ...`` go to eval.
    Articles sharing a title stay together. Both lists keep the input order.
    """
    titles = sorted({article["title"] for article in articles})
    eval_titles = set(titles[every - 1::every])
    train = [a for a in articles if a["title"] not in eval_titles]
    held_out = [a for a in articles if a["title"] in eval_titles]
    return train, held_out


def flatten_articles(articles: Iterable[Mapping]) -> list[dict[str, Any]]:
    """SQuAD JSON articles -> one dict per question (id, title, context, question, answers)."""
    examples = []
    for article in articles:
        for paragraph in article["paragraphs"]:
            for qa in paragraph["qas"]:
                examples.append({
                    "id": qa["id"],
                    "title": article["title"],
                    "context": paragraph["context"],
                    "question": qa["question"],
                    "answers": {"text": [a["text"] for a in qa["answers"]],
                                "answer_start": [a["answer_start"] for a in qa["answers"]]},
                })
    return examples


def _read_squad_json(path: Path) -> list[dict]:
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as err:
        line = path.read_bytes()[:err.start].count(b"\n") + 1
        raise DataError(f"{path}:{line}: not valid UTF-8 ({err.reason})") from None
    if not text.strip():
        raise DataError(f"{path}: file is empty")
    try:
        articles = json.loads(text)["data"]
    except json.JSONDecodeError as err:
        raise DataError(f"{path}:{err.lineno}: not valid JSON ({err.msg}, column {err.colno})") \
            from None
    except (KeyError, TypeError):
        raise DataError(f"{path}: not a SQuAD file (no top-level 'data' list)") from None
    try:
        flatten_articles(articles)
    except (KeyError, TypeError) as err:
        raise DataError(f"{path}: not a SQuAD file (missing field {err})") from None
    return articles


def load_squad(data_dir=None, split: str = "train", max_examples: int | None = None,
               seed: int = 0) -> list[dict[str, Any]]:
    """Load SQuAD v1.1 questions.

    Args:
        data_dir: folder holding ``squad/``; see the module docstring for the lookup order and
            for the article-level split used when only the dev file is available.
        split: ``"train"``, ``"eval"`` (aliases ``dev``/``validation``) or ``"all"`` (the whole
            dev file / hub validation split).
        max_examples: keep a deterministic random subset of questions (see
            :func:`movprune.data.subsample`; original order kept).
        seed: seed of that subset.

    Returns:
        A list of example dicts (id, title, context, question, answers).

    Raises:
        DataError: unknown split, files not found (lists every place looked), unreadable file,
            or hub failure.
    """
    split = _SPLIT_ALIASES.get(split, split)
    if split not in _HUB_SPLITS:
        raise DataError(f"unknown SQuAD split {split!r}; valid splits: train, eval, all")
    root, source = resolve_data_dir(data_dir)
    looked: list[str] = []
    if root is not None:
        train_path, dev_path = root / "squad" / _TRAIN_FILE, root / "squad" / _DEV_FILE
        if dev_path.is_file():
            if split == "all":
                articles = _read_squad_json(dev_path)
            elif train_path.is_file():  # the official split
                articles = _read_squad_json(train_path if split == "train" else dev_path)
            else:  # dev file only: article-level split
                train, held_out = split_articles(_read_squad_json(dev_path))
                articles = train if split == "train" else held_out
            return subsample(flatten_articles(articles), max_examples, seed)
        looked = [str(dev_path)]
        if source != "repo":
            raise DataError(f"no SQuAD file; looked at: {dev_path} "
                            f"(from {_SOURCE_NAMES[source]})")
    return subsample(_load_squad_hub(split, looked), max_examples, seed)


def _load_squad_hub(split: str, looked: list[str]) -> list[dict[str, Any]]:
    import datasets  # noqa: PLC0415  (only needed online)

    hub_split = _HUB_SPLITS[split]
    try:
        hub = datasets.load_dataset("squad", split=hub_split)
    except Exception as err:
        detail = " ".join(str(err).split())[:200]
        raise DataError(f"could not load SQuAD/{split}: looked at "
                        f"{'; '.join(looked) or 'no local folder'}; then "
                        f"datasets.load_dataset('squad', split={hub_split!r}) failed: "
                        f"{type(err).__name__}: {detail}") from None
    return [{"id": row["id"], "title": row["title"], "context": row["context"],
             "question": row["question"],
             "answers": {"text": list(row["answers"]["text"]),
                         "answer_start": list(row["answers"]["answer_start"])}}
            for row in hub]


# --------------------------------------------------------------------------------------------
# Features
# --------------------------------------------------------------------------------------------


def _as_columns(examples) -> dict[str, list]:
    """Accept a list of example dicts, a column dict (a ``Dataset.map`` batch) or a Dataset."""
    if isinstance(examples, Mapping):
        return {key: list(values) for key, values in examples.items()}
    rows = list(examples)
    return {key: [row[key] for row in rows] for key in ("id", "context", "question", "answers")}


def _tokenize_windows(batch: dict[str, list], tokenizer, max_length: int, doc_stride: int):
    """Tokenize (question, context) pairs into overlapping windows over the context.

    Returns the encoding and the sequence index (0 or 1) that holds the context.
    """
    if not getattr(tokenizer, "is_fast", False):
        raise TypeError("SQuAD feature preparation needs a fast tokenizer (offset mappings)")
    question_first = tokenizer.padding_side == "right"
    # Some SQuAD questions start with many spaces, which would only waste tokens.
    questions = [q.lstrip() for q in batch["question"]]
    contexts = batch["context"]
    encoding = tokenizer(
        questions if question_first else contexts,
        contexts if question_first else questions,
        truncation="only_second" if question_first else "only_first",
        max_length=max_length,
        stride=doc_stride,
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
        padding=False,
    )
    return encoding, (1 if question_first else 0)


def prepare_train_features(examples, tokenizer, max_length: int = 384, doc_stride: int = 128,
                           return_dataset: bool = True):
    """Training features with answer token positions.

    Each example may yield several windows. For a window containing the whole (first) gold
    answer, ``start_positions``/``end_positions`` are the first and last tokens of the answer;
    otherwise both point at the CLS token.

    Args:
        examples: list of example dicts, or a column dict (a ``Dataset.map(batched=True)``
            batch).
        tokenizer: a *fast* Hugging Face tokenizer.
        max_length: window length in tokens (question + context + special tokens).
        doc_stride: number of tokens shared by consecutive windows.
        return_dataset: True: a ``datasets.Dataset``; False: a column dict (what
            ``Dataset.map(prepare_train_features, batched=True, fn_kwargs={..., "return_dataset":
            False})`` needs).

    Returns:
        Columns ``input_ids``, ``attention_mask``, ``token_type_ids`` (if produced),
        ``start_positions``, ``end_positions``; one row per window, unpadded.
    """
    batch = _as_columns(examples)
    encoding, context_index = _tokenize_windows(batch, tokenizer, max_length, doc_stride)
    window_to_example = encoding.pop("overflow_to_sample_mapping")
    all_offsets = encoding.pop("offset_mapping")
    starts, ends = [], []
    for window, offsets in enumerate(all_offsets):
        input_ids = encoding["input_ids"][window]
        cls = input_ids.index(tokenizer.cls_token_id) if tokenizer.cls_token_id in input_ids else 0
        answers = batch["answers"][window_to_example[window]]
        sequence_ids = encoding.sequence_ids(window)
        context_tokens = [t for t, seq in enumerate(sequence_ids) if seq == context_index]
        start_tok = end_tok = cls
        if answers["text"] and context_tokens:
            answer_start = answers["answer_start"][0]
            answer_end = answer_start + len(answers["text"][0])  # exclusive character index
            first, last = context_tokens[0], context_tokens[-1]
            if offsets[first][0] <= answer_start and offsets[last][1] >= answer_end:
                # Last token starting at or before the answer; first token ending at or after it.
                start_tok = max(t for t in context_tokens if offsets[t][0] <= answer_start)
                end_tok = min(t for t in context_tokens if offsets[t][1] >= answer_end)
        starts.append(start_tok)
        ends.append(end_tok)
    features = {key: list(values) for key, values in encoding.items()}
    features["start_positions"] = starts
    features["end_positions"] = ends
    return _maybe_dataset(features, return_dataset)


def prepare_eval_features(examples, tokenizer, max_length: int = 384, doc_stride: int = 128,
                          return_dataset: bool = True):
    """Evaluation features: windows plus what :func:`postprocess_predictions` needs.

    Arguments as for :func:`prepare_train_features`.

    Returns:
        Columns ``input_ids``, ``attention_mask``, ``token_type_ids`` (if produced),
        ``offset_mapping`` (character span per token, None for tokens outside the context) and
        ``example_id``; one row per window, unpadded. Drop the last two columns before feeding
        the model.
    """
    batch = _as_columns(examples)
    encoding, context_index = _tokenize_windows(batch, tokenizer, max_length, doc_stride)
    window_to_example = encoding.pop("overflow_to_sample_mapping")
    all_offsets = encoding.pop("offset_mapping")
    offset_mapping, example_ids = [], []
    for window, offsets in enumerate(all_offsets):
        sequence_ids = encoding.sequence_ids(window)
        offset_mapping.append([tuple(span) if seq == context_index else None
                               for span, seq in zip(offsets, sequence_ids)])
        example_ids.append(batch["id"][window_to_example[window]])
    features = {key: list(values) for key, values in encoding.items()}
    features["offset_mapping"] = offset_mapping
    features["example_id"] = example_ids
    return _maybe_dataset(features, return_dataset)


def _maybe_dataset(columns: dict[str, list], return_dataset: bool):
    if not return_dataset:
        return columns
    import datasets  # noqa: PLC0415

    return datasets.Dataset.from_dict(columns)


def postprocess_predictions(examples, features, start_logits, end_logits, n_best: int = 20,
                            max_answer_length: int = 30) -> dict[str, str]:
    """Pick the best answer text per example from window logits.

    For every window of an example, the ``n_best`` highest start and end logits are combined;
    spans that leave the context, end before they start or are longer than ``max_answer_length``
    tokens are skipped; the span with the largest ``start_logit + end_logit`` over all windows wins.

    Args:
        examples: example dicts (need ``id`` and ``context``).
        features: output of :func:`prepare_eval_features` (Dataset, column dict or list of dicts
            with ``example_id`` and ``offset_mapping``), in the same order as the logits.
        start_logits, end_logits: arrays ``(num_windows, seq_len)``, or lists of 1-D arrays;
            rows may be longer than a window (padding positions are ignored).

    Returns:
        ``{example id: answer text}`` (``""`` when no valid span exists).
    """
    if isinstance(features, Mapping) or hasattr(features, "column_names"):  # dict or Dataset
        example_ids, offset_rows = list(features["example_id"]), list(features["offset_mapping"])
    else:
        rows = list(features)
        example_ids = [row["example_id"] for row in rows]
        offset_rows = [row["offset_mapping"] for row in rows]
    windows_of = collections.defaultdict(list)
    for window, example_id in enumerate(example_ids):
        windows_of[example_id].append(window)

    predictions = {}
    for example in examples:
        best_score, best_text = -np.inf, ""
        for window in windows_of.get(example["id"], []):
            starts = np.asarray(start_logits[window], dtype=np.float64)
            ends = np.asarray(end_logits[window], dtype=np.float64)
            offsets = offset_rows[window]
            for s in np.argsort(starts)[::-1][:n_best]:
                for e in np.argsort(ends)[::-1][:n_best]:
                    if s >= len(offsets) or e >= len(offsets):
                        continue
                    if offsets[s] is None or offsets[e] is None:
                        continue
                    if e < s or e - s + 1 > max_answer_length:
                        continue
                    score = starts[s] + ends[e]
                    if score > best_score:
                        best_score = score
                        best_text = example["context"][offsets[s][0]:offsets[e][1]]
        predictions[example["id"]] = best_text
    return predictions


# --------------------------------------------------------------------------------------------
# Official SQuAD v1.1 metrics
# --------------------------------------------------------------------------------------------


def normalize_answer(text: str) -> str:
    """Lower-case, drop punctuation, drop the articles a/an/the, collapse whitespace."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def exact_match_score(prediction: str, ground_truth: str) -> bool:
    """True if the normalized strings are equal."""
    return normalize_answer(prediction) == normalize_answer(ground_truth)


def f1_score(prediction: str, ground_truth: str) -> float:
    """Token-level F1 between normalized strings (bag-of-tokens overlap); 0 when no overlap."""
    prediction_tokens = normalize_answer(prediction).split()
    truth_tokens = normalize_answer(ground_truth).split()
    overlap = sum((collections.Counter(prediction_tokens)
                   & collections.Counter(truth_tokens)).values())
    if overlap == 0:
        return 0.0
    precision = overlap / len(prediction_tokens)
    recall = overlap / len(truth_tokens)
    return 2 * precision * recall / (precision + recall)


def squad_metrics(predictions: Mapping[str, str], examples: Iterable[Mapping]) -> dict[str, float]:
    """Official SQuAD v1.1 scores, in percent.

    Every example counts; one missing from ``predictions`` scores 0 (as in the official script).
    For each question, EM and F1 are the maximum over its gold answers.

    Returns:
        ``{"exact_match": float, "f1": float}``.
    """
    total = exact = f1 = 0.0
    for example in examples:
        total += 1
        if example["id"] not in predictions:
            continue
        prediction = predictions[example["id"]]
        golds = example["answers"]["text"]
        exact += max(float(exact_match_score(prediction, gold)) for gold in golds)
        f1 += max(f1_score(prediction, gold) for gold in golds)
    if total == 0:
        raise DataError("squad_metrics got no examples")
    return {"exact_match": 100.0 * exact / total, "f1": 100.0 * f1 / total}
