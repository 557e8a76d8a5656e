"""`factory plan`: a calibration here projects a campaign; checked against a real 2-worker run."""

import json
import math
import os
import time

import pytest

from factory.app.main import main
from factory.config import load_config
from factory.errors import ConfigError
from factory.planning import Calibration, Cluster, project

#: every sample costs the same (one radius): the calibration's few samples then stand for all
SETS = ["simulator.radius_nm=[100,100]"]


def _bytes(path) -> int:
    return sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(path) for f in fs)


def _plan_then_run(tmp_path, capsys, n: int) -> tuple[dict, float, int, str]:
    """`factory plan --json` for n samples on 1 node x 2 CPUs, then the real run: `generate`
    with 2 workers on a fresh embedded Ray, timed whole; (plan, seconds, store bytes, summary)."""
    import ray

    from factory.engine import generate

    if ray.is_initialized():  # the plan and the run each start their own embedded Ray
        ray.shutdown()
    assert main(["plan", "msft/tiny", "--samples", str(n), "--nodes", "1", "--cpus-per-node", "2",
                 "--set", SETS[0], "--calibration-s", "4", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert not ray.is_initialized()  # the calibration's own Ray is gone
    out = tmp_path / f"run-{time.monotonic_ns()}.zarr"
    t0 = time.perf_counter()
    report = generate(load_config("msft/tiny", SETS, samples=n), out, workers=2, progress=False)
    measured = time.perf_counter() - t0
    ray.shutdown()
    assert report.done == n
    size = _bytes(out)
    summary = (f"projected {plan['wall_s']:.1f} s (startup {plan['startup_s']:.1f}, blocks {plan['fill_s']:.1f}), "
               f"measured {measured:.1f} s (blocks {report.wall_s:.1f}); store {plan['store_bytes'] / 1e6:.2f} vs "
               f"{size / 1e6:.2f} MB; load {os.getloadavg()[0]:.1f}; calibration {plan['calibration']}")
    return plan, measured, size, summary


@pytest.mark.slow
def test_projection_within_30_percent_of_a_real_two_worker_run(tmp_path, capsys):
    n = 3200  # 400 blocks of 8 on 2 workers: 15-30 s on a shared 2-core machine (with 1600, a quiet
    # machine's 4-s calibration took 848 samples: more than half the run, 2026-12-08)
    tries = []
    for _ in range(2):  # a second pair when the first missed: other processes' load can change between the two
        plan, measured, size, summary = _plan_then_run(tmp_path, capsys, n)
        print(summary)
        tries.append(summary)
        cal = plan["calibration"]
        assert plan["slots"] == 2 and plan["blocks"] == 400 and plan["waves"] == 200 and cal["slots"] == 2
        assert cal["samples"] < n / 2 and cal["warm_blocks"] >= 4
        assert cal["compute_per_sample_s"] > 0 and cal["bytes_per_sample"] > 1000
        assert any("Ray's overhead per block" in a for a in plan["assumptions"])
        assert abs(plan["store_bytes"] / size - 1) < 0.3, summary
        if abs(plan["wall_s"] / measured - 1) < 0.3:
            return
    pytest.fail("projected wall time off by more than 30 % twice:\n" + "\n".join(tries))


def _calibration(**over) -> Calibration:
    base = dict(kind="msft", config_hash="h", chunk=8, cpus_per_task=1, slots=2, samples=80, warm_blocks=8,
                compute_per_sample_s=0.01, write_per_sample_s=0.005, overhead_per_block_s=0.02, block_s=0.14,
                cold_start_s=2.0, startup_s=3.0, driver_s=1.0, bytes_per_sample=1e4, bytes_fixed=5e4,
                wall_s=9.0, where="here", machine="cpu")
    return Calibration(**{**base, **over})


def test_projection_arithmetic_on_a_cluster():
    cal = _calibration()
    p = project(cal, 1_000_000, Cluster(nodes=10, cpus_per_node=64, gpus_per_node=4))
    assert p.slots == 640 and p.blocks == 125_000 and p.waves == math.ceil(125_000 / 640)
    assert p.fill_s == pytest.approx(2.0 + p.waves * 0.14)
    assert p.wall_s == pytest.approx(3.0 + p.fill_s)
    assert p.core_hours == pytest.approx(640 * p.wall_s / 3600)
    assert p.busy_core_hours == pytest.approx(1e6 * 0.015 / 3600)
    assert p.gpu_hours == pytest.approx(40 * p.wall_s / 3600)
    assert p.store_bytes == pytest.approx(5e4 + 1e10)
    assert any("GPUs stay idle" in w for w in p.warnings)
    # 4 CPUs per block: a quarter of the slots; a partial last block alone in its wave is shorter
    p4 = project(_calibration(cpus_per_task=4), 8 * 16 + 1, Cluster(nodes=1, cpus_per_node=64, cpus_per_task=4))
    assert p4.slots == 16 and p4.blocks == 17 and p4.waves == 2
    assert p4.fill_s == pytest.approx(2.0 + 0.14 + 0.02 + 1 * 0.015)


def test_projection_warns_and_refuses():
    few = project(_calibration(), 24, Cluster(nodes=2, cpus_per_node=8))
    assert any("only 3 blocks for 16 slots" in w for w in few.warnings)
    slow = project(_calibration(overhead_per_block_s=0.1, block_s=0.22), 10_000, Cluster(nodes=1, cpus_per_node=2))
    assert any("a larger chunk" in w for w in slow.warnings)
    with pytest.raises(ConfigError, match="calibrate with the same --cpus-per-task"):
        project(_calibration(), 100, Cluster(nodes=1, cpus_per_node=8, cpus_per_task=2))
    with pytest.raises(ConfigError, match="cpus-per-task = 8 is more than a node's 4 CPUs"):
        Cluster(nodes=1, cpus_per_node=4, cpus_per_task=8)


def test_cli_refuses_bad_input_in_one_line(capsys):
    assert main(["plan", "msft/tiny", "--samples", "0"]) == 2
    assert main(["plan", "no/such-preset", "--samples", "10"]) == 2
    err = capsys.readouterr().err
    assert err.count("error:") == 2 and "Traceback" not in err
