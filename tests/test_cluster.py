"""The batch beyond one process: one run per GPU on one machine, and the Ray executor on a real local
Ray cluster (2 CPUs) with runs of the smoke profile."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest

from movprune.store import ResultStore

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason="needs ../shared/data")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _smoke(*prefixes):
    """Configs of the smoke profile whose run ids start with ``prefixes``, in the profile's order."""
    from movprune.profiles import get_profile

    configs = [c for c in get_profile("smoke").all_configs() if c.run_id().startswith(prefixes)]
    assert len(configs) == len(prefixes)
    return configs


# ---------------------------------------------------------------------------------------------
# the local executor: one run per GPU


def test_gpus_come_from_cuda_visible_devices_and_set_the_default_jobs(monkeypatch):
    from movprune import batch, gpus

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    assert gpus.visible_gpus() == ["2", "3"] and batch.default_jobs() == 2
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,5,6,7,8,9,10,11")
    assert batch.default_jobs() == 8
    assert gpus.device_slots(["0", "1"], 3) == ["0", "1", "0"]  # --jobs 3 on 2 GPUs
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # no GPU: the CPU rule (2 runs on >= 2 cores)
    assert gpus.visible_gpus() == [] and batch.default_jobs() == (2 if (os.cpu_count() or 1) >= 2 else 1)


def _device_of_this_worker(barrier):
    barrier.wait(60)  # both workers hold a task at once: each reports its own GPU
    return os.getpid(), os.environ.get("CUDA_VISIBLE_DEVICES")


def test_each_worker_process_of_the_local_pool_sees_one_gpu_of_its_own():
    import multiprocessing as mp

    from movprune.gpus import process_pool

    with mp.get_context("spawn").Manager() as manager:
        barrier = manager.Barrier(2)
        with process_pool(2, ["0", "1"]) as pool:
            seen = [f.result(timeout=120) for f in [pool.submit(_device_of_this_worker, barrier) for _ in range(2)]]
    assert len({pid for pid, _ in seen}) == 2 and sorted(d for _, d in seen) == ["0", "1"]


# ---------------------------------------------------------------------------------------------
# Ray


def test_a_run_asks_ray_for_a_gpu_only_where_the_cluster_has_gpus(tmp_path):
    from movprune.cluster import MAX_RETRIES, pack_folder, task_options, unpack_folder

    assert task_options({"CPU": 64.0, "GPU": 8.0}) == {"num_cpus": 1, "num_gpus": 1, "max_retries": MAX_RETRIES}
    assert task_options({"CPU": 2.0})["num_gpus"] == 0
    # a teacher's model travels as bytes and lands whole
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "weights.bin").write_bytes(b"\x00" * 1000)
    unpack_folder(pack_folder(tmp_path / "model"), tmp_path / "copy")
    assert (tmp_path / "copy" / "weights.bin").read_bytes() == b"\x00" * 1000
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_an_unreachable_cluster_address_is_one_line_and_writes_nothing(tmp_path, capsys):
    import socket

    from movprune.cli import main

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    args = ["batch", "--profile", "smoke", "--only", "sweeps", "--executor", "ray", "--address", f"127.0.0.1:{port}",
            "--results", str(tmp_path / "results"), "--work-dir", str(tmp_path / "work")]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("movprune: error: cannot reach the Ray cluster") and "\n" not in err
    assert not list(tmp_path.iterdir())


@pytest.fixture(scope="module")
def ray_cluster():
    """A real local Ray cluster of 2 CPUs, for this module's tests."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, configure_logging=False)
    yield ray
    ray.shutdown()


def _kill_first_worker_mid_run(work: Path, killed: list, stop: threading.Event) -> None:
    """Wait for a run to start in ``work``, then SIGKILL the Ray worker process training it (once)."""
    import json

    while not stop.is_set():
        for marker in work.glob("*/worker.json"):
            if (marker.parent / "output").exists():
                continue
            pid = json.loads(marker.read_text())["pid"]
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes() if Path(f"/proc/{pid}").exists() else b""
            assert b"ray" in cmdline, cmdline  # a worker of the cluster this test started, nothing else
            time.sleep(1.0)
            os.kill(pid, signal.SIGKILL)
            killed.append((marker.parent.name, pid))
            return
        time.sleep(0.2)


@needs_data
def test_ray_grid_equals_the_local_executor_and_survives_a_killed_worker(tmp_path, ray_cluster):
    """Smoke runs (a distillation teacher, a run beside it, its student) through Ray give the local
    executor's records at one thread per run, although a worker was killed mid-run; a rerun trains nothing."""
    import torch

    from movprune.batch import run_sweeps
    from movprune.cluster import run_sweeps_ray

    configs = _smoke("sst2-tiny-dense", "sst2-tiny-magnitude_v0.1_local-s0", "sst2-tiny-movement_v0.1_local-kd")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each Ray task trains
    try:
        local = run_sweeps(configs, ResultStore(tmp_path / "local"), tmp_path / "work_local", log=lambda m: None)
    finally:
        torch.set_num_threads(threads)
    assert local["trained"] == 3

    store, work, logged, killed, stop = ResultStore(tmp_path / "ray"), tmp_path / "work_ray", [], [], threading.Event()
    killer = threading.Thread(target=_kill_first_worker_mid_run, args=(work, killed, stop), daemon=True)
    killer.start()
    try:
        result = run_sweeps_ray(configs, store, work, log=logged.append, max_retries=2)
    finally:
        stop.set()
        killer.join()
    assert killed, "no worker was killed"
    assert result["trained"] == 3 and not result["failed"], (result, logged)
    killed_run, killed_pid = killed[0]
    import json

    assert json.loads((work / killed_run / "worker.json").read_text())["pid"] != killed_pid  # trained again
    assert sorted(line.split()[1].rstrip(":") for line in logged if line.startswith("trained")) == \
        sorted(c.run_id() for c in configs)  # each landed once
    mine = {r["run_id"]: r for r in store.records()}
    theirs = {r["run_id"]: r for r in ResultStore(tmp_path / "local").records()}
    assert set(mine) == set(theirs) == {c.run_id() for c in configs}
    for run_id, r in theirs.items():
        assert (mine[run_id]["metrics"], mine[run_id]["remaining"], mine[run_id]["loss_curve"]) == \
            (r["metrics"], r["remaining"], r["loss_curve"]), run_id
        assert store.side_file(run_id, ".npz").is_file()
    assert mine[configs[2].run_id()]["teacher"]["run_id"] == configs[0].run_id()
    again = run_sweeps_ray(configs, store, work, log=lambda m: None)
    assert (again["trained"], again["cached"]) == (0, 3)


@needs_data
def test_ray_reports_a_bad_run_once_without_retrying_it(tmp_path, ray_cluster):
    from movprune.cluster import run_sweeps_ray
    from movprune.config import RunConfig

    bad = RunConfig(task="sst2", method="dense", model=str(tmp_path / "no-such-model"), max_steps=2)
    logged = []
    result = run_sweeps_ray([bad], ResultStore(tmp_path / "runs"), tmp_path / "work", log=logged.append)
    assert result["trained"] == 0 and list(result["failed"]) == [bad.run_id()]
    message = result["failed"][bad.run_id()]
    assert "no-such-model does not exist" in message and "\n" not in message
    assert sum(line.startswith("FAILED") for line in logged) == 1
    assert not list((tmp_path / "runs").glob("*.json"))


@needs_data
def test_a_run_finished_on_a_worker_is_landed_not_retrained_after_the_driver_died(tmp_path, ray_cluster):
    """The task kept its output in its run folder; the next driver lands that instead of training again."""
    import torch

    from movprune.cluster import run_sweeps_ray, train_task

    (config,) = _smoke("sst2-tiny-magnitude_v0.03_local-s0")
    threads = torch.get_num_threads()
    try:
        finished = train_task(config, str(tmp_path / "work"))  # what a worker did before its driver died
    finally:
        torch.set_num_threads(threads)
    assert finished["status"] == "trained"
    store = ResultStore(tmp_path / "runs")
    result = run_sweeps_ray([config], store, tmp_path / "work", log=lambda m: None)
    assert result["trained"] == 1
    assert store.get(config.run_id())["finished_at"] == finished["output"].record["finished_at"]
