"""Task data for the GLUE-style sentence (pair) tasks: registry, loading, tokenization, metrics.

Where data comes from (first match wins, see :func:`resolve_data_dir`):

1. the ``data_dir`` argument;
2. the ``MOVPRUNE_DATA_DIR`` environment variable;
3. ``../shared/data`` next to the repository root, if that folder exists (a convenience for this
   project's machines; tasks missing there fall through to the hub);
4. the Hugging Face hub (``datasets.load_dataset("glue", <config>)``), for online users.

A local folder may hold the GLUE tasks directly (``<dir>/SST-2/train.tsv``) or under a
``glue`` subfolder (``<dir>/glue/SST-2/train.tsv``); SICK lives in ``<dir>/sick`` and SQuAD in
``<dir>/squad`` (SQuAD itself is handled by :mod:`movprune.squad`). TSVs are read with quoting
off, like GLUE's own readers, and are validated strictly: any problem raises :class:`DataError`
with a one-line message naming the file and the 1-based line.

Examples are plain dicts
``{"text_a": str, "text_b": str | None, "label": int | float, "idx": int}``.
Classification labels are indices into ``TaskSpec.label_list`` (the same order as the hub's GLUE
``ClassLabel`` names, so local and hub data agree); regression labels (STS-B) are floats.

Metrics (:func:`compute_metrics`) are fractions in [0, 1] (or correlations in [-1, 1]),
computed with numpy only (no scipy/sklearn needed).
"""

from __future__ import annotations

import csv
import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np

__all__ = [
    "DataError",
    "TaskSpec",
    "TASKS",
    "ENV_VAR",
    "REPO_DATA_DIR",
    "get_task",
    "resolve_data_dir",
    "read_tsv",
    "load_task",
    "subsample",
    "tokenize_task",
    "length_grouped_batches",
    "compute_metrics",
    "main_metric",
]

ENV_VAR = "MOVPRUNE_DATA_DIR"
# <repo root>/../shared/data; module-level so tests can monkeypatch it.
REPO_DATA_DIR = Path(__file__).resolve().parents[2] / "shared" / "data"


class DataError(ValueError):
    """A data set could not be found or read; the message is one line and names file and line."""


# --------------------------------------------------------------------------------------------
# Task registry
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TaskSpec:
    """Static description of one task.

    Attributes:
        name: registry key (``"sst2"``, ``"mnli-mm"``...).
        folder: folder holding the local files (``"SST-2"``, ``"sick"``...).
        text_a, text_b: TSV column names of the first / second text (``text_b`` None for
            single-sentence tasks).
        label_column: TSV column holding the label (for SQuAD: ``"answers"``).
        label_list: class names in label-index order; None for regression and QA.
        metrics: names of the metrics :func:`compute_metrics` returns.
        main_metric: the metric used to pick/report a model.
        splits: split name -> local file name (``"train"`` and ``"eval"`` always exist).
        kind: ``"classification"``, ``"regression"`` or ``"qa"``.
        columns: column names for header-less files (CoLA); None when the file has a header row.
        in_glue: whether the folder may also sit under ``<data_dir>/glue/``.
        hub_path, hub_config: arguments of ``datasets.load_dataset``; hub_path None = no hub copy.
        hub_text_a, hub_text_b: column names on the hub.
        hub_splits: split name -> hub split name (missing = that split only exists locally).
        label_range: allowed closed interval for regression labels.
    """

    name: str
    folder: str
    text_a: str | None
    text_b: str | None
    label_column: str
    label_list: tuple[str, ...] | None
    metrics: tuple[str, ...]
    main_metric: str
    splits: dict[str, str]
    kind: str = "classification"
    columns: tuple[str, ...] | None = None
    in_glue: bool = True
    hub_path: str | None = "glue"
    hub_config: str | None = None
    hub_text_a: str | None = None
    hub_text_b: str | None = None
    hub_splits: dict[str, str] = field(default_factory=dict)
    label_range: tuple[float, float] | None = None

    @property
    def num_labels(self) -> int:
        """Number of model outputs: classes, or 1 for regression."""
        return len(self.label_list) if self.label_list else 1


_GLUE_SPLITS = {"train": "train", "eval": "validation"}
_NLI3 = ("entailment", "neutral", "contradiction")  # MNLI's (and the hub's) label order
_NLI2 = ("entailment", "not_entailment")
_ACC = ("accuracy",)


def _glue(name, folder, text_a, text_b, label_column, label_list, metrics, main, hub_a, hub_b,
          splits=None, hub_splits=None, **kw) -> TaskSpec:
    return TaskSpec(
        name=name, folder=folder, text_a=text_a, text_b=text_b, label_column=label_column,
        label_list=label_list, metrics=metrics, main_metric=main,
        splits=splits or {"train": "train.tsv", "eval": "dev.tsv"},
        kind="classification" if label_list else "regression",
        hub_config=name, hub_text_a=hub_a, hub_text_b=hub_b,
        hub_splits=hub_splits or dict(_GLUE_SPLITS), **kw,
    )


_MNLI_SPLITS = {"train": "train.tsv", "eval": "dev_matched.tsv",
                "eval_mismatched": "dev_mismatched.tsv"}
_MNLI_HUB = {"train": "train", "eval": "validation_matched",
             "eval_mismatched": "validation_mismatched"}

TASKS: dict[str, TaskSpec] = {
    spec.name: spec
    for spec in [
        _glue("cola", "CoLA", "sentence", None, "label", ("unacceptable", "acceptable"),
              ("mcc", "accuracy"), "mcc", "sentence", None,
              columns=("source", "label", "original_label", "sentence")),
        _glue("sst2", "SST-2", "sentence", None, "label", ("negative", "positive"), _ACC,
              "accuracy", "sentence", None,
              # train_sentences.tsv: the 6,920 full training sentences (local copy only).
              splits={"train": "train.tsv", "eval": "dev.tsv",
                      "train_sentences": "train_sentences.tsv"}),
        _glue("mrpc", "MRPC", "#1 String", "#2 String", "Quality",
              ("not_equivalent", "equivalent"), ("f1", "accuracy"), "f1",
              "sentence1", "sentence2"),
        _glue("stsb", "STS-B", "sentence1", "sentence2", "score", None,
              ("pearson", "spearmanr"), "pearson", "sentence1", "sentence2",
              label_range=(0.0, 5.0)),
        _glue("qqp", "QQP", "question1", "question2", "is_duplicate",
              ("not_duplicate", "duplicate"), ("accuracy", "f1"), "accuracy",
              "question1", "question2"),
        _glue("mnli", "MNLI", "sentence1", "sentence2", "gold_label", _NLI3, _ACC, "accuracy",
              "premise", "hypothesis", splits=_MNLI_SPLITS, hub_splits=_MNLI_HUB),
        TaskSpec(name="mnli-mm", folder="MNLI", text_a="sentence1", text_b="sentence2",
                 label_column="gold_label", label_list=_NLI3, metrics=_ACC,
                 main_metric="accuracy",
                 splits={"train": "train.tsv", "eval": "dev_mismatched.tsv"},
                 hub_config="mnli", hub_text_a="premise", hub_text_b="hypothesis",
                 hub_splits={"train": "train", "eval": "validation_mismatched"}),
        _glue("qnli", "QNLI", "question", "sentence", "label", _NLI2, _ACC, "accuracy",
              "question", "sentence"),
        _glue("rte", "RTE", "sentence1", "sentence2", "label", _NLI2, _ACC, "accuracy",
              "sentence1", "sentence2"),
        # GLUE's WNLI files use 1 = entailment, hence this order (also the hub's).
        _glue("wnli", "WNLI", "sentence1", "sentence2", "label", ("not_entailment", "entailment"),
              _ACC, "accuracy", "sentence1", "sentence2"),
        # SICK: 3-way NLI with MNLI column names; the offline stand-in for MNLI. Local only.
        TaskSpec(name="sick", folder="sick", text_a="sentence1", text_b="sentence2",
                 label_column="gold_label", label_list=_NLI3, metrics=_ACC,
                 main_metric="accuracy",
                 splits={"train": "train.tsv", "eval": "dev.tsv", "test": "test.tsv"},
                 in_glue=False, hub_path=None),
        # SQuAD v1.1: loading and features live in movprune.squad.
        TaskSpec(name="squad", folder="squad", text_a="question", text_b="context",
                 label_column="answers", label_list=None, metrics=("exact_match", "f1"),
                 main_metric="f1", splits={"train": "train-v1.1.json", "eval": "dev-v1.1.json"},
                 kind="qa", in_glue=False, hub_path="squad",
                 hub_splits={"train": "train", "eval": "validation"}),
    ]
}

_ALIASES = {"sst-2": "sst2", "sts-b": "stsb", "mnli-m": "mnli", "mnli_mm": "mnli-mm",
            "mnli-mismatched": "mnli-mm", "squad1": "squad", "squad-v1.1": "squad"}
_SPLIT_ALIASES = {"dev": "eval", "validation": "eval", "val": "eval"}


def get_task(task: str | TaskSpec) -> TaskSpec:
    """Return the :class:`TaskSpec` for ``task`` (case-insensitive; ``SST-2`` etc. accepted).

    Raises:
        DataError: unknown task name (the message lists the valid ones).
    """
    if isinstance(task, TaskSpec):
        return task
    key = str(task).strip().lower()
    key = _ALIASES.get(key, key)
    if key not in TASKS:
        raise DataError(f"unknown task {task!r}; valid tasks: {', '.join(TASKS)}")
    return TASKS[key]


def main_metric(task: str | TaskSpec) -> str:
    """Name of the metric used to select/report models for ``task`` (e.g. ``"mcc"`` for CoLA)."""
    return get_task(task).main_metric


def _split_key(spec: TaskSpec, split: str) -> str:
    key = _SPLIT_ALIASES.get(split, split)
    if key not in spec.splits:
        raise DataError(f"task {spec.name!r} has no split {split!r}; valid splits: "
                        f"{', '.join(spec.splits)}")
    return key


# --------------------------------------------------------------------------------------------
# Finding files
# --------------------------------------------------------------------------------------------


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> tuple[Path | None, str]:
    """Pick the local data folder: ``(path, source)``.

    ``source`` is ``"argument"``, ``"env"`` (``$MOVPRUNE_DATA_DIR``), ``"repo"``
    (``../shared/data`` next to the repository, only if it exists) or ``"hub"`` (then ``path`` is
    None). A folder given by argument or environment variable is used as is, even if it does not
    exist (loading then fails with the paths looked at); only the ``"repo"`` folder falls back to
    the hub for tasks it lacks.
    """
    if data_dir is not None:
        return Path(data_dir).expanduser(), "argument"
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser(), "env"
    if Path(REPO_DATA_DIR).is_dir():
        return Path(REPO_DATA_DIR), "repo"
    return None, "hub"


def task_file_candidates(root: Path, spec: TaskSpec, filename: str) -> list[Path]:
    """Paths where ``filename`` of ``spec`` may sit under ``root`` (direct, then ``glue/``)."""
    paths = [root / spec.folder / filename]
    if spec.in_glue:
        paths.append(root / "glue" / spec.folder / filename)
    return paths


_SOURCE_NAMES = {"argument": "data_dir argument", "env": f"${ENV_VAR}",
                 "repo": "repository ../shared/data"}


# --------------------------------------------------------------------------------------------
# Reading TSV files
# --------------------------------------------------------------------------------------------


def _decoded_lines(path: Path) -> Iterator[str]:
    """Yield the lines of ``path`` as text, raising DataError with the line number on bad UTF-8."""
    with open(path, "rb") as handle:
        for lineno, raw in enumerate(handle, start=1):
            try:
                yield raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
            except UnicodeDecodeError as err:
                raise DataError(f"{path}:{lineno}: not valid UTF-8 ({err.reason} at byte "
                                f"{err.start} of the line)") from None


def read_tsv(path: str | os.PathLike, columns: Sequence[str] | None = None,
             required: Iterable[str] = ()) -> list[tuple[int, dict[str, str]]]:
    """Read a tab-separated file with quoting off; return ``[(line_number, row_dict), ...]``.

    Args:
        path: the file.
        columns: column names for a header-less file; None = the first line is the header.
        required: column names that must exist.

    Blank lines are skipped. Every other row must have exactly as many fields as the header.

    Raises:
        DataError: empty file, header without rows, missing column, wrong field count, bad UTF-8.
    """
    path = Path(path)
    reader = csv.reader(_decoded_lines(path), delimiter="\t", quoting=csv.QUOTE_NONE)
    header = list(columns) if columns is not None else None
    rows: list[tuple[int, dict[str, str]]] = []
    saw_any_line = False
    for fields in reader:
        lineno = reader.line_num
        if not fields or fields == [""]:
            continue
        saw_any_line = True
        if header is None:
            header = fields
            missing = [name for name in required if name not in header]
            if missing:
                raise DataError(f"{path}:{lineno}: header lacks column(s) {missing}; "
                                f"header is {header}")
            continue
        if len(fields) != len(header):
            raise DataError(f"{path}:{lineno}: malformed row: expected {len(header)} "
                            f"tab-separated columns, found {len(fields)}")
        rows.append((lineno, dict(zip(header, fields))))
    if not saw_any_line:
        raise DataError(f"{path}: file is empty")
    if not rows:
        raise DataError(f"{path}: file has a header but no examples")
    return rows


def _parse_label(spec: TaskSpec, value: str, path: Path, lineno: int) -> int | float:
    value = value.strip()
    if spec.label_list is None:  # regression
        try:
            number = float(value)
        except ValueError:
            raise DataError(f"{path}:{lineno}: label {value!r} is not a number") from None
        low, high = spec.label_range or (-np.inf, np.inf)
        if not (low <= number <= high):
            raise DataError(f"{path}:{lineno}: label {value!r} outside [{low}, {high}]")
        return number
    if value in spec.label_list:
        return spec.label_list.index(value)
    if value.isdigit() and int(value) < len(spec.label_list):
        return int(value)
    raise DataError(f"{path}:{lineno}: label {value!r} not in {list(spec.label_list)} "
                    f"(or 0..{len(spec.label_list) - 1})")


def _read_task_file(spec: TaskSpec, path: Path) -> list[dict[str, Any]]:
    text_columns = [c for c in (spec.text_a, spec.text_b) if c]
    required = [*text_columns, spec.label_column]
    examples = []
    for idx, (lineno, row) in enumerate(read_tsv(path, spec.columns, required)):
        examples.append({
            "text_a": row[spec.text_a],
            "text_b": row[spec.text_b] if spec.text_b else None,
            "label": _parse_label(spec, row[spec.label_column], path, lineno),
            "idx": idx,
        })
    return examples


def _load_from_hub(spec: TaskSpec, split_key: str, looked: list[str]) -> list[dict[str, Any]]:
    hub_split = spec.hub_splits.get(split_key)
    if spec.hub_path is None or hub_split is None:
        raise DataError(f"no local file for {spec.name}/{split_key} and no hub copy; looked at: "
                        f"{'; '.join(looked) or 'nothing'}")
    import datasets  # noqa: PLC0415  (import late: only needed online)

    args = (spec.hub_path,) + ((spec.hub_config,) if spec.hub_config else ())
    try:
        hub = datasets.load_dataset(*args, split=hub_split)
    except Exception as err:  # offline, missing dataset, etc.
        detail = " ".join(str(err).split())[:200]
        raise DataError(f"could not load {spec.name}/{split_key}: looked at "
                        f"{'; '.join(looked) or 'no local folder'}; then "
                        f"datasets.load_dataset({', '.join(map(repr, args))}, "
                        f"split={hub_split!r}) failed: "
                        f"{type(err).__name__}: {detail}") from None
    return [{"text_a": row[spec.hub_text_a],
             "text_b": row[spec.hub_text_b] if spec.hub_text_b else None,
             "label": float(row["label"]) if spec.label_list is None else int(row["label"]),
             "idx": i} for i, row in enumerate(hub)]


def subsample(examples: list, max_examples: int | None, seed: int = 0) -> list:
    """Deterministic subset: ``max_examples`` items drawn by ``random.Random(seed).sample``,
    returned in their original order. None, or a size >= len(examples), returns everything."""
    if max_examples is None or max_examples >= len(examples):
        return list(examples)
    if max_examples < 0:
        raise DataError(f"max_examples must be >= 0, got {max_examples}")
    keep = sorted(random.Random(seed).sample(range(len(examples)), max_examples))
    return [examples[i] for i in keep]


def load_task(task: str | TaskSpec, data_dir: str | os.PathLike | None = None,
              split: str = "train", max_examples: int | None = None,
              seed: int = 0) -> list[dict[str, Any]]:
    """Load one split of a sentence (pair) task as a list of example dicts.

    Args:
        task: a key of :data:`TASKS` (not ``"squad"``: use :func:`movprune.squad.load_squad`).
        data_dir: local data folder; see the module docstring for the lookup order.
        split: ``"train"`` or ``"eval"`` (aliases ``dev``/``validation``), or a task-specific split
            (``eval_mismatched`` for MNLI, ``test`` for SICK, ``train_sentences`` for SST-2).
        max_examples: keep a deterministic random subset of this size (see :func:`subsample`).
        seed: seed of that subset.

    Returns:
        ``[{"text_a", "text_b" (None for single-sentence tasks), "label", "idx"}, ...]`` with
        ``label`` an index into ``TaskSpec.label_list`` (int) or a float for STS-B.

    Raises:
        DataError: unknown task/split, file not found (the message lists every place looked),
            malformed file (file and line), bad label, or hub failure.
    """
    spec = get_task(task)
    if spec.kind == "qa":
        raise DataError(f"task {spec.name!r} is extractive QA; use movprune.squad.load_squad")
    key = _split_key(spec, split)
    root, source = resolve_data_dir(data_dir)
    looked: list[str] = []
    if root is not None:
        candidates = task_file_candidates(root, spec, spec.splits[key])
        for path in candidates:
            if path.is_file():
                return subsample(_read_task_file(spec, path), max_examples, seed)
        looked = [f"{p} (from {_SOURCE_NAMES[source]})" for p in candidates]
        if source != "repo":
            raise DataError(f"no file for {spec.name}/{key}; looked at: {'; '.join(looked)}")
    return subsample(_load_from_hub(spec, key, looked), max_examples, seed)


# --------------------------------------------------------------------------------------------
# Tokenization
# --------------------------------------------------------------------------------------------


def tokenize_task(examples, tokenizer, max_length: int = 128, task: str | TaskSpec | None = None):
    """Tokenize examples into a ``datasets.Dataset`` ready for a Trainer, **without padding**.

    Args:
        examples: list of example dicts from :func:`load_task` (or a ``datasets.Dataset`` with the
            same columns).
        tokenizer: a Hugging Face tokenizer.
        max_length: longest sequence kept (longer pairs are truncated, longest side first).
        task: optional; regression is detected from the label type when omitted.

    Returns:
        ``datasets.Dataset`` with ``input_ids``, ``attention_mask``, ``token_type_ids`` (if the
        tokenizer produces them) and ``labels`` (int64, or float32 for regression). Pad batches
        with ``transformers.DataCollatorWithPadding(tokenizer)``.
    """
    import datasets  # noqa: PLC0415

    rows = list(examples)
    if not rows:
        raise DataError("tokenize_task got no examples")
    texts_a = [row["text_a"] for row in rows]
    texts_b = [row["text_b"] for row in rows]
    pairs = any(t is not None for t in texts_b)
    if pairs and any(t is None for t in texts_b):
        raise DataError("tokenize_task: some examples have text_b and some do not")
    encoded = tokenizer(texts_a, texts_b if pairs else None, truncation=True,
                        max_length=max_length, padding=False)
    if task is not None:
        regression = get_task(task).kind == "regression"
    else:
        regression = any(isinstance(row["label"], float) for row in rows)
    columns = {name: list(values) for name, values in encoded.items()}
    columns["labels"] = [float(r["label"]) if regression else int(r["label"]) for r in rows]
    features = datasets.Features({
        **{name: datasets.List(datasets.Value("int64")) for name in encoded},
        "labels": datasets.Value("float32" if regression else "int64"),
    })
    return datasets.Dataset.from_dict(columns, features=features)


def length_grouped_batches(lengths: Sequence[int], batch_size: int, seed: int = 0,
                           mega_batch_factor: int = 50) -> list[list[int]]:
    """Batches of indices with similar lengths (less padding), in a seeded random order.

    Indices are shuffled, cut into mega-batches of ``batch_size * mega_batch_factor``, each
    mega-batch is sorted by length (longest first) and cut into batches; the batch order is then
    shuffled. Usable as a ``batch_sampler`` of a ``torch.utils.data.DataLoader``.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    rng = random.Random(seed)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    mega = batch_size * max(1, mega_batch_factor)
    batches = []
    for start in range(0, len(order), mega):
        chunk = sorted(order[start:start + mega], key=lambda i: -lengths[i])
        batches += [chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    return batches


# --------------------------------------------------------------------------------------------
# Metrics
# --------------------------------------------------------------------------------------------


def accuracy(predictions, labels) -> float:
    """Fraction of predictions equal to labels."""
    predictions, labels = np.asarray(predictions), np.asarray(labels)
    return float((predictions == labels).mean())


def binary_f1(predictions, labels, positive: int = 1) -> float:
    """F1 of the positive class; 0.0 when there are no true positives."""
    predictions, labels = np.asarray(predictions), np.asarray(labels)
    tp = int(np.sum((predictions == positive) & (labels == positive)))
    fp = int(np.sum((predictions == positive) & (labels != positive)))
    fn = int(np.sum((predictions != positive) & (labels == positive)))
    return 0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn)


def matthews_corrcoef(predictions, labels) -> float:
    """Matthews correlation (multi-class form, as in scikit-learn); 0.0 when undefined."""
    predictions, labels = np.asarray(predictions), np.asarray(labels)
    classes = np.union1d(predictions, labels)
    true_counts = np.array([np.sum(labels == c) for c in classes], dtype=np.float64)
    pred_counts = np.array([np.sum(predictions == c) for c in classes], dtype=np.float64)
    correct = float(np.sum(predictions == labels))
    n = float(len(labels))
    numerator = correct * n - true_counts @ pred_counts
    denominator = np.sqrt((n * n - pred_counts @ pred_counts) * (n * n - true_counts @ true_counts))
    return 0.0 if denominator == 0 else float(numerator / denominator)


def pearson(x, y) -> float:
    """Pearson correlation; 0.0 if either side is constant."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    dx, dy = x - x.mean(), y - y.mean()
    denominator = np.sqrt((dx @ dx) * (dy @ dy))
    return 0.0 if denominator == 0 else float((dx @ dy) / denominator)


def _average_ranks(values) -> np.ndarray:
    """1-based ranks, ties sharing their average rank (as scipy.stats.rankdata)."""
    values = np.asarray(values, dtype=np.float64)
    order = np.argsort(values, kind="mergesort")
    sorted_values = values[order]
    ranks = np.empty(len(values), dtype=np.float64)
    start = 0
    while start < len(values):
        end = start
        while end + 1 < len(values) and sorted_values[end + 1] == sorted_values[start]:
            end += 1
        ranks[order[start:end + 1]] = (start + end) / 2 + 1
        start = end + 1
    return ranks


def spearman(x, y) -> float:
    """Spearman rank correlation (Pearson of average ranks)."""
    return pearson(_average_ranks(x), _average_ranks(y))


def compute_metrics(task: str | TaskSpec, predictions, labels) -> dict[str, float]:
    """Task metrics as floats.

    Args:
        task: task name.
        predictions: class ids, or logits of shape ``(n, num_labels)`` (argmax taken); for STS-B
            scores of shape ``(n,)`` or ``(n, 1)``.
        labels: gold class ids / scores.

    Returns:
        cola: ``mcc``, ``accuracy``; sst2, rte, wnli, qnli, mnli, mnli-mm, sick: ``accuracy``;
        mrpc, qqp: ``f1`` (positive class 1) and ``accuracy``; stsb: ``pearson``, ``spearmanr``.
        Values are fractions (not percentages).
    """
    spec = get_task(task)
    if spec.kind == "qa":
        raise DataError("SQuAD metrics need texts: use movprune.squad.squad_metrics")
    predictions = np.asarray(predictions)
    labels = np.asarray(labels)
    if spec.kind == "regression":
        predictions = predictions.reshape(len(predictions), -1)[:, 0] if predictions.ndim > 1 \
            else predictions
    elif predictions.ndim > 1:
        predictions = predictions.argmax(axis=-1)
    if predictions.shape != labels.shape or len(labels) == 0:
        raise DataError(f"compute_metrics: {predictions.shape[0] if predictions.ndim else 0} "
                        f"predictions for {len(labels)} labels")
    functions = {
        "accuracy": accuracy, "f1": binary_f1, "mcc": matthews_corrcoef,
        "pearson": pearson, "spearmanr": spearman,
    }
    return {name: functions[name](predictions, labels) for name in spec.metrics}
