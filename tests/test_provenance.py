"""Records pool into a cell only on one software stack and one training set (movprune.provenance)."""
from datasets import Dataset

from movprune.provenance import pool_key, split_by_pool, stack_key, train_fingerprint


def _record(task="squad", torch="2.13.0+cpu", transformers="5.24.0", features=11217, sha="a"):
    return {"task": task, "versions": {"torch": torch, "transformers": transformers},
            "train_data": {"features": features, "sha1": sha}, "train_examples": features}


def test_fingerprint_changes_with_the_features_and_not_with_a_copy():
    a = Dataset.from_dict({"input_ids": [[101, 7, 102], [101, 8, 102]], "labels": [0, 1]})
    same = Dataset.from_dict({"input_ids": [[101, 7, 102], [101, 8, 102]], "labels": [0, 1]})
    other_label = Dataset.from_dict({"input_ids": [[101, 7, 102], [101, 8, 102]], "labels": [1, 1]})
    fewer = Dataset.from_dict({"input_ids": [[101, 7, 102]], "labels": [0]})
    assert train_fingerprint(a) == train_fingerprint(same)
    assert train_fingerprint(a)["features"] == 2
    assert train_fingerprint(a)["sha1"] != train_fingerprint(other_label)["sha1"]
    assert train_fingerprint(a)["sha1"] != train_fingerprint(fewer)["sha1"]


def test_stack_key_drops_the_build_tag_only():
    assert stack_key(_record(torch="2.13.0+cpu")) == stack_key(_record(torch="2.13.0+cu130"))
    assert stack_key(_record(torch="2.11.0+cu130")) != stack_key(_record())
    assert stack_key({"versions": {}}) == "unknown"


def test_records_of_another_stack_or_data_are_kept_apart():
    pinned = [_record(), _record(), _record(torch="2.13.0+cu130")]
    gpu_env = _record(torch="2.11.0+cu130", transformers="5.17.0", features=10616)
    other_windows = _record(features=10616)  # pinned stack, other training features
    kept, left = split_by_pool(pinned + [gpu_env, other_windows])
    assert kept == pinned
    assert left == [gpu_env, other_windows]
    assert pool_key(other_windows) != pool_key(pinned[0])
    # each task has its own pinned key
    kept, left = split_by_pool([_record(task="sick", features=4500), _record()])
    assert len(kept) == 2 and not left


def _run(seed, score, torch="2.13.0+cpu", transformers="5.24.0", clip=None, features=4500):
    rec = {"run_id": f"sick-m-{seed}-{torch}-{clip}", "task": "sick", "model": "minilm", "method": "movement",
           "scope": "local", "distill": False, "seed": seed, "remaining": 0.03, "target_remaining": 0.03,
           "main_metric": "accuracy", "score": score, "metrics": {"accuracy": score}, "train_examples": features,
           "versions": {"torch": torch, "transformers": transformers}, "finished_at": f"2026-12-0{seed + 1}"}
    if clip is not None:
        rec["clip"] = clip
    return rec


def test_a_cell_pools_one_stack_and_the_recipe_only():
    from movprune.records import records_frame
    from movprune.tables import STACK_MARK, cell_marks, cell_value

    records = [_run(0, 80.0), _run(1, 81.0), _run(2, 70.0, torch="2.11.0+cu130", transformers="5.17.0"),
               _run(0, 60.0, clip="weights")]
    cell = cell_value(records_frame(records), "sick", "movement", 0.03, False, "accuracy")
    assert cell["n"] == 2 and cell["mean"] == 80.5  # the other stack's seed and the clip variant stay out
    assert cell["other_stack"] == 1 and STACK_MARK in cell_marks([cell])
    # the clip variant is a cell of its own
    from movprune.records import select
    variant = select(records_frame(records), task="sick", method="movement", clip="weights")
    assert list(variant.score) == [60.0]
    # one stack: nothing left out, no mark
    alone = cell_value(records_frame(records[:2]), "sick", "movement", 0.03, False, "accuracy")
    assert alone["other_stack"] == 0 and STACK_MARK not in cell_marks([alone])
