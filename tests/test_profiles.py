"""Profiles: what each one runs, and the `paper` profile's wiring with the hub mocked out."""

import dataclasses
import os

import pytest

from movprune import data, models
from movprune.profiles import SPARSITIES, get_profile
from movprune.train import RunConfig, run

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def test_demo_profile_covers_every_table_cell_for_sst2():
    prof = get_profile("demo")
    groups = prof.configs()
    assert prof.model == "minilm" and prof.tasks == ("sst2",)
    for group, distill in (("table", False), ("table_kd", True)):
        cells = {(c.method, c.remaining) for c in groups[group]}
        for v in SPARSITIES:
            assert ("magnitude", v) in cells and ("movement", v) in cells
        assert {c.distill for c in groups[group]} == {distill}
        assert sum(c.method == "soft_movement" for c in groups[group]) >= 3
        assert sum(c.method == "l0" for c in groups[group]) >= 3
    assert {(c.method, c.remaining) for c in groups["global"]} == {(m, v) for m in ("magnitude", "movement")
                                                                  for v in SPARSITIES}
    assert [c.method for c in groups["control"]] == ["zero_encoder"]
    ids = [c.run_id() for c in prof.all_configs()]
    assert len(ids) == len(set(ids)) and ids[0] == groups["dense"][0].run_id()


def test_paper_profile_uses_the_authors_hyperparameters():
    prof = get_profile("paper")
    by = {(c.task, c.method, c.remaining, c.distill, c.scope): c for c in prof.all_configs()}
    mnli = by[("mnli", "movement", 0.10, False, "local")]
    assert (mnli.model, mnli.batch_size, mnli.max_length, mnli.lr, mnli.epochs) == ("bert-base-uncased", 32, 128,
                                                                                     3e-5, 6)
    assert mnli.freeze_embeddings and mnli.score_lr is None  # 1e-2 (L0 1e-1) by default
    squad = by[("squad", "magnitude", 0.03, True, "local")]
    assert (squad.batch_size, squad.max_length, squad.epochs) == (16, 384, 10)
    assert (squad.alpha_distil, squad.alpha_ce, squad.temperature) == (0.9, 0.1, 2.0)
    assert by[("qqp", "movement", 0.10, False, "local")].lr == 3e-6
    assert max(c.final_lambda or 0 for c in prof.all_configs() if c.method == "soft_movement") >= 2000


def test_gpu_profile_is_the_demo_grid_with_longer_budgets():
    small, gpu = get_profile("demo"), get_profile("gpu")
    key = lambda c: (c.method, c.remaining, c.scope, c.distill)  # noqa: E731
    assert sorted(map(key, gpu.all_configs()), key=str) == sorted(map(key, small.all_configs()), key=str)
    c = gpu.all_configs()[0]
    assert (c.model, c.epochs, c.max_steps, c.max_train_examples, c.lr) == ("minilm", 2, None, None, 3e-5)
    assert len({c.run_id() for c in gpu.all_configs()} & {c.run_id() for c in small.all_configs()}) == 0


def test_gpu_script_picks_eleven_distinct_runs_of_the_gpu_profile():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "scripts" / "gpu_sst2.py"
    spec = importlib.util.spec_from_file_location("gpu_sst2", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    wanted = script.wanted_configs()
    ids = [c.run_id() for c in wanted]
    grid = {c.run_id() for c in get_profile("gpu").all_configs(seeds=(0, 1))}
    assert len(set(ids)) == 11 and set(ids) <= grid  # same ids as the batch would use: records are shared
    assert ids[0].startswith("sst2-minilm-dense-s0-") and wanted[-1].distill
    assert all(c.save_steps == 100000 for c in wanted)


def test_gpu_minilm_script_picks_the_missing_minilm_runs_dense_first():
    import importlib.util
    from pathlib import Path
    from types import SimpleNamespace

    path = Path(__file__).resolve().parents[1] / "scripts" / "gpu_minilm.py"
    spec = importlib.util.spec_from_file_location("gpu_minilm", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    minilm = get_profile("minilm")
    wanted = script.wanted_configs(("squad", "sick"))
    ids = [c.run_id() for c in wanted]
    assert set(ids) == {c.run_id() for c in minilm.all_configs(tasks=("squad", "sick"))}  # the batch's ids
    assert ids[0].startswith("squad-minilm-dense-s0-") and wanted[0].max_length == 192
    first_sick = next(i for i, c in enumerate(wanted) if c.task == "sick")
    assert wanted[first_sick].method == "dense" and all(c.task == "squad" for c in wanted[:first_sick])
    stored = SimpleNamespace(get=lambda run_id: {"run_id": run_id} if run_id == ids[0] else None)  # a store
    assert [c.run_id() for c in script.wanted_configs(("squad",), stored)] == ids[1:first_sick]
    window = script.window_check_config()  # the 384-token dense run, apart from the profile's store
    assert (window.method, window.max_length, window.doc_stride, window.max_steps) == ("dense", 384, 128, 3400)
    assert window.run_id() not in ids


def test_unknown_profile():
    with pytest.raises(ValueError, match="unknown profile"):
        get_profile("large")
    for former in ("small", "medium"):  # renamed demo and minilm; their records keep their ids
        with pytest.raises(ValueError, match="choose one of minilm, smoke, demo, gpu, paper"):
            get_profile(former)


def test_minilm_is_the_default_and_its_committed_records_keep_their_ids():
    """The sound recipe, renamed from ``medium``: a run id hashes the config, never the profile's name, so
    the records in results/minilm/runs are still the profile's runs (78 of them when it was renamed,
    the others being trained), and ``python -m movprune batch`` renders all three tasks."""
    from pathlib import Path

    from movprune.profiles import DEFAULT_PROFILE

    prof = get_profile(DEFAULT_PROFILE)
    assert prof.name == "minilm" and prof.tasks == prof.all_tasks == ("sst2", "sick", "squad")
    ids = {c.run_id() for c in prof.all_configs()}
    assert ids == {c.run_id() for c in dataclasses.replace(prof, name="renamed").all_configs()}
    committed = {p.stem for p in (Path(__file__).resolve().parents[1] / "results" / "minilm" / "runs").glob("*.json")}
    assert len(ids & committed) >= 78 and "sick-minilm-movement_v0.1_local-s0-e363385609" in ids & committed
    assert {c.task for c in prof.all_configs() if c.run_id() in committed} == {"sst2", "sick", "squad"}


def test_paper_profile_wiring_with_hub_mocked(tmp_path, monkeypatch):
    """MNLI and bert-base-uncased come from the hub: mock both and run the profile's first configs."""
    import datasets

    calls = []

    def fake_load_dataset(*args, split=None, **kwargs):
        calls.append((args, split))
        rows = [{"premise": f"a man plays {i}", "hypothesis": f"someone plays {i % 3}", "label": i % 3}
                for i in range(48)]
        return datasets.Dataset.from_list(rows)

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    monkeypatch.setattr(data, "REPO_DATA_DIR", tmp_path / "no-local-data")
    monkeypatch.delenv("MOVPRUNE_DATA_DIR", raising=False)
    real_load_model, real_tok = models.load_model, models.load_tokenizer
    loaded = []

    def fake_model(name, kind, num_labels=2, seed=0):
        loaded.append(name)
        return real_load_model("tiny", kind, num_labels, seed)

    monkeypatch.setattr(models, "load_model", fake_model)
    monkeypatch.setattr(models, "load_tokenizer", lambda name: real_tok("tiny"))
    monkeypatch.setattr(models, "check_model_name", lambda *a, **k: None)
    prof = get_profile("paper")
    configs = [c for c in prof.all_configs(tasks=["mnli"]) if c.method in ("dense", "movement")][:2]
    for c in configs:
        small = dataclasses.replace(c, max_steps=2, batch_size=8, max_length=32, epochs=1)
        rec = run(small, store=tmp_path / "runs", work_dir=tmp_path / "work", progress=False)
        assert rec["model"] == "bert-base-uncased" and "accuracy" in rec["metrics"]
    assert loaded and set(loaded) == {"bert-base-uncased"}
    assert (("glue", "mnli"), "train") in calls and (("glue", "mnli"), "validation_matched") in calls


def test_collapse_map_commands_rebuild_the_same_runs():
    """The command printed for each seed-study run trains exactly that run (same run id)."""
    import importlib.util
    import shlex
    from pathlib import Path

    from movprune.cli import _config_kwargs, build_parser
    from movprune.train import RunConfig

    path = Path(__file__).resolve().parents[1] / "scripts" / "collapse_map.py"
    spec = importlib.util.spec_from_file_location("collapse_map", path)
    cm = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cm)
    for name in cm.SETTINGS:
        for config in cm.configs(name):
            argv = shlex.split(cm.command(config, cm.store_of(name)))[3:]  # drop "python -m movprune"
            args = build_parser().parse_args(argv)
            assert RunConfig(**_config_kwargs(args)).run_id() == config.run_id(), name
    # the ramp2000 settings are the minilm profile's cells (their records are its records)
    from movprune.profiles import get_profile

    minilm = {c.run_id() for c in get_profile("minilm").all_configs()}
    for name in ("ramp2000-10pct", "ramp2000-3pct", "ramp2000-1pct", "ramp2000-10pct-magnitude",
                 "ramp2000-3pct-magnitude"):
        assert cm.configs(name, [0])[0].run_id() in minilm and cm.store_of(name) == cm.MINILM_STORE
    assert cm.configs("warmup1000", [0])[0].run_id() not in minilm


def test_seed_cells_add_seeds_to_their_cells_only():
    """A profile's seed cells are trained for every cell seed; other cells keep the profile's seeds."""
    from movprune.profiles import Profile, TaskBudget

    prof = Profile(name="t", model="tiny", tasks=("sst2", "sick"), all_tasks=("sst2", "sick"),
                   budgets={"sst2": TaskBudget(max_steps=10), "sick": TaskBudget(max_steps=10)},
                   distill_options=(False,), with_global=False, with_control=False,
                   seed_cells=(("sick", "movement", 0.03), ("sick", "magnitude", 0.03)), cell_seeds=(0, 1, 2))
    configs = prof.all_configs()
    seeds = {}
    for c in configs:
        seeds.setdefault((c.task, c.method, c.remaining), set()).add(c.seed)
    assert seeds[("sick", "movement", 0.03)] == seeds[("sick", "magnitude", 0.03)] == {0, 1, 2}
    assert seeds[("sick", "movement", 0.1)] == seeds[("sst2", "movement", 0.03)] == {0}
    assert len({c.run_id() for c in configs}) == len(configs) == 2 * 7 + 4
    table = prof.configs()["table"]
    assert len({c.run_id() for c in table}) == len(table)  # seed 0 of a seed cell is listed once
    # soft movement / L0 cells: every seed trains the lambdas that bracket the cell, with the profile's options
    soft = dataclasses.replace(prof, soft_lambdas={"sick": (10.0, 30.0, 100.0)}, soft_score_lr=0.1,
                               seed_cells=(("sick", "soft_movement", (30.0, 100.0)),))
    runs = [(c.final_lambda, c.seed, c.score_lr) for c in soft.all_configs() if c.method == "soft_movement"]
    assert sorted(runs) == sorted([(10.0, 0, 0.1), (30.0, 0, 0.1), (100.0, 0, 0.1)]
                                  + [(lam, s, 0.1) for lam in (30.0, 100.0) for s in (1, 2)])


def test_distill_cells_add_distilled_runs_of_their_cells_only():
    """A profile without the distillation tables still trains its distill cells with distillation (seed 0)."""
    from movprune.profiles import Profile, TaskBudget

    prof = Profile(name="t", model="tiny", tasks=("sick",), all_tasks=("sick",),
                   budgets={"sick": TaskBudget(max_steps=10)}, distill_options=(False,), with_global=False,
                   with_control=False, soft_lambdas=(10.0, 30.0, 100.0), cell_seeds=(0, 1, 2),
                   seed_cells=(("sick", "movement", 0.03),),
                   distill_cells=(("sick", "movement", 0.03), ("sick", "soft_movement", (30.0, 100.0))))
    groups = prof.configs()
    kd = sorted((c.method, c.remaining, c.final_lambda, c.seed) for c in groups["table_kd"])
    assert kd == [("movement", 0.03, None, 0), ("soft_movement", None, 30.0, 0), ("soft_movement", None, 100.0, 0)]
    assert all(c.distill for c in groups["table_kd"]) and not any(c.distill for c in groups["table"])
    # the distilled runs are runs of their own (their ids differ from the undistilled ones of the cell)
    ids = [c.run_id() for c in prof.all_configs()]
    assert len(ids) == len(set(ids)) == len(groups["table"]) + len(groups["table_kd"]) + 1  # + dense
    assert {c.run_id() for c in groups["table_kd"]}.isdisjoint(c.run_id() for c in groups["table"])


@pytest.mark.parametrize("name", ["demo", "minilm", "gpu", "paper"])
def test_every_distilled_run_is_taught_by_its_profiles_own_dense_run(name):
    """The teacher's run id is the profile's dense run of that task and seed, so the batch trains the
    teacher once (as the dense cell) instead of a second, differently keyed dense run."""
    prof = get_profile(name)
    configs = prof.all_configs(tasks=prof.all_tasks)
    dense = {c.run_id() for c in configs if c.method == "dense" and not c.distill}
    distilled = [c for c in configs if c.distill]
    if name in ("demo", "minilm"):
        assert distilled
    for c in distilled:
        assert c.teacher_config().run_id() in dense, c.run_id()


def test_with_global_can_name_the_tasks_that_get_global_runs():
    """``with_global=("sick",)`` adds global magnitude / movement runs on SICK only, at every sparsity."""
    from movprune.profiles import Profile, TaskBudget

    prof = Profile(name="t", model="tiny", tasks=("sst2", "sick"), all_tasks=("sst2", "sick"),
                   budgets={"sst2": TaskBudget(max_steps=10), "sick": TaskBudget(max_steps=10)},
                   distill_options=(False,), with_global=("sick",), with_control=False, sparsities=(0.1, 0.03))
    glob = sorted((c.task, c.method, c.remaining) for c in prof.all_configs() if c.scope == "global")
    assert glob == sorted((t, m, v) for t in ("sick",) for m in ("magnitude", "movement") for v in (0.1, 0.03))
    assert {c.task for c in prof.configs()["global"]} == {"sick"}
    every = dataclasses.replace(prof, with_global=True)
    assert {c.task for c in every.configs()["global"]} == {"sst2", "sick"}
    assert "global" not in dataclasses.replace(prof, with_global=False).configs()


def test_the_qa_control_is_never_stopped_by_the_collapse_rule():
    """A zeroed encoder still hands each token's embedding to a QA head (token-level priors to learn);
    a classifier's [CLS] output no longer depends on the input, so only there the rule may end it."""
    prof = get_profile("minilm")
    controls = {c.task: c for c in prof.configs(tasks=["sst2", "sick", "squad"])["control"]}
    assert controls["squad"].stop_on_collapse is False
    assert controls["sst2"].stop_on_collapse and controls["sick"].stop_on_collapse
    pruned = [c for c in prof.all_configs(["squad"]) if c.method != "zero_encoder"]
    assert pruned and all(c.stop_on_collapse for c in pruned)
