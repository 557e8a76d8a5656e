"""Quiet, honest output (issue 18): the project's lines only, once each, plain; --quiet /
--verbose; progress rates from the work done; a resume of finished work starts nothing."""

import re
import subprocess
import sys

import pytest

from factory.cli import main
from models.synthetic import make_store

ANSI = re.compile(r"\x1b\[")
RAY_INTERNALS = ("PlacementGroupCleaner", "RayTrainWorker pid=", "TrainController", "Token authentication",
                 "Found multiple active Ray instances", "core_worker.cc", "pid=")
EPOCH = re.compile(r"^\[train\] epoch (\d+)/(\d+) ")


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return make_store(tmp_path_factory.mktemp("log") / "disks.zarr", n=32, chunk=8, shape=(32, 32))


def factory_cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "factory.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)


def cli(capsys, *args) -> subprocess.CompletedProcess:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(args, code, out, err)


@pytest.mark.slow
def test_ray_train_run_prints_only_its_own_lines_once(store, tmp_path):
    """`factory train` through Ray Train (an embedded Ray, Ray Train's controller, its placement
    group cleaner, a worker): each epoch line once, the result, nothing of Ray's own."""
    run = factory_cli("train", "pmd-cnn/tiny", "--store", store.path, "--out", tmp_path / "run",
                      "--set", "optim.epochs=2", "--set", "optim.lr_drop_epochs=[1]", "--set", "run.workers=1")
    assert run.returncode == 0, run.stderr
    assert "Ray Train, 1 worker(s)" in run.stdout  # it did run on Ray Train
    for stream in (run.stdout, run.stderr):
        assert not ANSI.search(stream), stream
        for marker in RAY_INTERNALS:
            assert marker not in stream, (marker, stream)
    out = [l for l in run.stdout.splitlines() if l.strip()]
    assert len(out) == 1 and out[0].startswith(f"{tmp_path / 'run' / 'model'}: epoch"), run.stdout
    err = [l for l in run.stderr.splitlines() if l.strip()]
    epochs = [EPOCH.match(l).groups() for l in err if EPOCH.match(l)]
    assert epochs == [("1", "2"), ("2", "2")], run.stderr  # each epoch once, in order, from the worker via the driver
    assert len(err) == 2, run.stderr  # and nothing else


def test_quiet_keeps_the_result_and_hides_progress(store, tmp_path, capsys, torch_one_thread):
    import ray

    ray.shutdown()  # one a test before left running would hide whether this one starts Ray
    args = ["train", "pmd-cnn/tiny", "--store", store.path, "--set", "optim.epochs=1", "--set", "run.backend=local"]
    loud = cli(capsys, *args, "--out", tmp_path / "loud")
    assert loud.returncode == 0 and [l for l in loud.stderr.splitlines() if EPOCH.match(l)], loud.stderr
    quiet = cli(capsys, "-q", *args, "--out", tmp_path / "quiet")
    assert quiet.returncode == 0 and quiet.stderr == "", quiet.stderr
    assert quiet.stdout.startswith(f"{tmp_path / 'quiet' / 'model'}: epoch 1 of 1 selected"), quiet.stdout
    # a complete run resumed: no Ray, no training, and no "nan images/s"
    again = cli(capsys, *args[:-2], "--out", tmp_path / "quiet", "--resume")
    assert again.returncode == 0 and "already complete, nothing trained" in again.stdout, again
    assert "nan" not in again.stdout
    assert not ray.is_initialized()  # run.backend is ray in pmd-cnn/tiny: a resume with nothing to do started none


def test_quiet_and_verbose_set_the_level(capsys):
    from factory import logs

    try:
        assert cli(capsys, "-v", "presets").returncode == 0 and logs.verbose()
        assert cli(capsys, "--quiet", "presets").returncode == 0 and logs.quiet() and not logs.verbose()
        assert cli(capsys, "presets").returncode == 0 and not logs.quiet() and not logs.verbose()
    finally:
        logs.configure()


def test_warnings_are_plain_lines_on_stderr(capfd):
    from factory import logs

    logs.configure()
    logs.get_logger("factory.test").warning("physics says %s", "no")
    logs.get_logger("models.test").info("progress")
    logs.get_logger("models.test").debug("hidden")
    out, err = capfd.readouterr()
    assert out == "" and err == "warning: physics says no\nprogress\n"


def test_rate_is_work_done_over_elapsed_time():
    """Two workers' blocks finish in pairs, the first pair after the workers' start: rich's own
    speed (the work between its first and last update) reads nine times too high; the bar's
    rate is the work done over the time since the start, as in the run's summary."""
    from rich.progress import Progress

    from factory.progress import EtaColumn, RateColumn, rate

    now = [0.0]
    bar = Progress(get_time=lambda: now[0], disable=True)
    task_id = bar.add_task("generate", total=64)
    for t in (10.0, 10.5, 11.0):  # two blocks of 8 samples at once: 48 samples in 11.01 s
        now[0] = t
        bar.advance(task_id, 8)
        now[0] = t + 0.01
        bar.advance(task_id, 8)
    task = bar.tasks[0]
    assert task.speed > 5 * 48 / 11.01  # what the bar used to show (39.6 /s)
    assert rate(task) == pytest.approx(48 / 11.01)
    assert RateColumn().render(task).plain == "4.36 /s"
    assert EtaColumn().render(task).plain == "0:00:03"  # 16 samples left at 4.36 /s


def test_resume_of_a_complete_store_starts_no_ray(tmp_path, capsys):
    import ray

    ray.shutdown()

    from factory.compute import LocalExecutor
    from factory.config import load_config
    from factory.engine import generate

    cfg = load_config("blobs/tiny", [], samples=8)
    generate(cfg, tmp_path / "b.zarr", executor=LocalExecutor(), progress=False)
    res = cli(capsys, "generate", "blobs/tiny", "--samples", "8", "--out", tmp_path / "b.zarr", "--resume")
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == f"{tmp_path / 'b.zarr'}: already complete (8/8 samples); nothing to do"
    assert res.stderr == ""  # no empty "0/0 -- /s" bar
    assert not ray.is_initialized()


@pytest.mark.slow
@pytest.mark.xdist_group("ray-dashboard")  # port 8265: never beside another dashboard
def test_dashboard_is_on_loopback(tmp_path):
    run = factory_cli("--dashboard", "generate", "blobs/tiny", "--samples", "4", "--out", tmp_path / "b.zarr",
                      "--no-progress")
    assert run.returncode == 0, run.stderr
    lines = [l for l in run.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and re.fullmatch(r"Ray dashboard: http://127\.0\.0\.1:\d+", lines[0]), run.stderr
