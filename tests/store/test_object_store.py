"""Stores on object storage: generate, info --verify, process, train and a killed-then-resumed
generate on s3:// URLs, against a local S3-compatible server (moto's server mode on 127.0.0.1).

Every command runs as a user would run it (``python -m factory.cli``) with the standard AWS
environment pointing at the loopback server.  A ``sitecustomize`` on the commands' PYTHONPATH
(and the same guard in this process) refuses, and records with its call stack, any name lookup
of a remote host (``*.amazonaws.com``, the instance metadata address, anything but this
machine), so no request leaves the machine, and a code path that tried to reach AWS itself
fails the test.  The one lookup allowed to be recorded is Ray's own: its dashboard process
(``UsageStatsHead``) probes the cloud metadata addresses on every start, even with usage
stats disabled; the guard refuses it too.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

pytest.importorskip("s3fs")
boto3 = pytest.importorskip("boto3")
moto_server = pytest.importorskip("moto.server")

from factory.compute import LocalExecutor  # noqa: E402
from factory.config import load_config  # noqa: E402
from factory.engine import generate  # noqa: E402
from factory.errors import OutputError, StoreError  # noqa: E402
from factory.store import DatasetStore, StoreURL, store_location  # noqa: E402
from factory.store.location import publish  # noqa: E402

BUCKET = "bucket"
SMALL = ["--set", "simulator.n_blobs=1", "--set", "chunk=16"]  # 32 samples in 2 chunks: few objects
GUARD = textwrap.dedent('''
    """Test guard (tests/store/test_object_store.py): no name lookup of a remote host."""
    import ipaddress, json, os, socket, traceback

    _real = socket.getaddrinfo
    _local = {"localhost", "", socket.gethostname(), socket.getfqdn()}


    def _remote(host):
        host = host.decode() if isinstance(host, bytes) else str(host or "")
        try:
            ip = ipaddress.ip_address(host.split("%")[0])
        except ValueError:
            return host.lower() not in _local
        return ip.is_link_local  # e.g. 169.254.169.254, the cloud instance metadata service


    def _guarded(host, *args, **kwargs):
        if _remote(host):
            with open(os.environ["FACTORY_TEST_NET_LOG"], "a") as f:
                f.write(json.dumps({"pid": os.getpid(), "host": repr(host), "stack": traceback.format_stack()}) + "\\n")
            raise OSError(f"test guard: no traffic to {host}")
        return _real(host, *args, **kwargs)


    socket.getaddrinfo = _guarded
''')


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """A moto S3 server on 127.0.0.1 with one bucket; the environment every command gets."""
    import logging

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
    root = tmp_path_factory.mktemp("s3")
    (root / "guard").mkdir()
    (root / "guard" / "sitecustomize.py").write_text(GUARD)
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = {
        "AWS_ENDPOINT_URL": f"http://{host}:{port}", "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": str(root / "no-aws-config"), "AWS_SHARED_CREDENTIALS_FILE": str(root / "no-aws-creds"),
        "FACTORY_TEST_NET_LOG": str(root / "remote-lookups.log"), "RAY_USAGE_STATS_ENABLED": "0",
        "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
    }
    saved = {k: os.environ.get(k) for k in [*env, "AWS_PROFILE", "AWS_SESSION_TOKEN"]}
    os.environ.update(env)  # this process (library calls, boto3) talks to the same server
    for k in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
        os.environ.pop(k, None)
    real = socket.getaddrinfo
    guard: dict = {}
    exec(compile(GUARD, "guard", "exec"), guard)  # the same guard in this process
    try:
        client = boto3.client("s3")
        client.create_bucket(Bucket=BUCKET)
        cmd_env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            [str(root / "guard"), *filter(None, [os.environ.get("PYTHONPATH")])])}
        probe = subprocess.run([sys.executable, "-c", "import socket; socket.getaddrinfo('s3.amazonaws.com', 443)"],
                               env={**cmd_env, "FACTORY_TEST_NET_LOG": str(root / "probe.log")}, capture_output=True,
                               text=True)
        assert probe.returncode != 0 and "test guard" in probe.stderr, probe.stderr  # the guard is in every command
        yield {"env": cmd_env, "client": client, "log": root / "remote-lookups.log"}
    finally:
        socket.getaddrinfo = real
        server.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    log = root / "remote-lookups.log"
    lookups = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    ours = [e for e in lookups if not any("ray/_common/usage/usage_lib.py" in f for f in e["stack"])]
    assert not ours, f"a remote host was looked up: {ours[0]['host']}\n" + "".join(ours[0]["stack"]) if ours else ""


def cli(s3, *args: str, cwd=None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "factory.cli", *args], env=s3["env"], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout)


def ok(proc: subprocess.CompletedProcess) -> dict:
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    return json.loads(proc.stdout)


def keys(s3, prefix: str) -> list[str]:
    pages = s3["client"].get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    return sorted(o["Key"] for page in pages for o in page.get("Contents", []))


@pytest.mark.slow
def test_generate_info_process_train_on_s3(s3, tmp_path):
    raw, net = f"s3://{BUCKET}/chain/raw.zarr", f"s3://{BUCKET}/chain/net.zarr"
    rep = ok(cli(s3, "generate", "blobs/tiny", "--out", raw, "--workers", "1", "--json", *SMALL))
    assert (rep["path"], rep["done"], rep["samples"], rep["blocks_computed"]) == (raw, 32, 32, 2)
    assert "chain/raw.zarr/images/c/1/0/0" in keys(s3, "chain/raw.zarr/")  # the chunks are objects in the bucket

    info = ok(cli(s3, "info", raw, "--verify", "--json"))
    assert info["path"] == raw and info["done"] == 32 and info["damaged"] == []

    rep = ok(cli(s3, "process", "preprocess", raw, "--out", net, "--mode", "scatter", "--workers", "1", "--json"))
    assert rep["path"] == net and rep["samples"] == 32
    st = DatasetStore.open(net)  # a reader: complete, checked
    assert st.images.shape == (32, 128, 128) and st.meta["lineage"][0]["path"] == raw
    assert st.split_codes() is not None

    run = tmp_path / "run"
    res = ok(cli(s3, "train", "resnet-scatter/tiny", "--store", net, "--out", str(run), "--json",
                 "--set", "run.backend=local", "--set", "run.cpus_per_worker=1", "--set", "optim.epochs=1",
                 "--set", "optim.lr_drop_epochs=[]", "--set", "data.augment=none",
                 "--set", "data.labels=[amp0,sigma0]", "--set", "data.scaling=minmax"))
    assert res["epochs_done"] == 1 and np.isfinite(res["best_val_loss"])
    card = json.loads((run / "model" / "model.json").read_text())
    assert card["training_set"]["path"] == net and card["training_set"]["lineage"][0]["path"] == raw

    # a store on object storage is never replaced: --overwrite is refused, the store stays
    cfg = load_config("blobs/tiny", ["simulator.n_blobs=1", "chunk=16"])
    with pytest.raises(OutputError, match="not available on object storage"):
        generate(cfg, raw, overwrite=True, executor=LocalExecutor(), progress=False)
    assert DatasetStore.open(raw).verify() == []


@pytest.mark.slow
def test_resume_after_killed_generate_equals_one_go(s3, tmp_path):
    url = f"s3://{BUCKET}/resume/r.zarr"
    sets = ["--set", "simulator.n_blobs=1", "--set", "chunk=2", "--set", "simulator.delay_s=0.1"]  # >= 0.2 s a block
    args = ["generate", "blobs/tiny", "--out", url, "--samples", "24", "--workers", "1", *sets]
    proc = subprocess.Popen([sys.executable, "-m", "factory.cli", *args, "--no-progress"], env=s3["env"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    done = 0
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                done = int(DatasetStore.open(url, partial=True).done_mask().sum())
            except StoreError:  # not created yet
                done = 0
            if done >= 4:
                break
            time.sleep(0.2)
        assert proc.poll() is None, f"generate ended before it could be killed:\n{proc.stderr.read()[-2000:]}"
        assert done >= 4, "no progress within the time limit"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(60)
    with pytest.raises(StoreError, match="samples not done"):
        DatasetStore.open(url)  # readers refuse the killed store
    st = DatasetStore.open(url, partial=True)
    left = st.missing_blocks()
    assert 0 < len(left) < 12

    rep = ok(cli(s3, "generate", "blobs/tiny", "--out", url, "--samples", "24", "--workers", "1", "--resume",
                 "--json", *sets))
    assert rep["done"] == 24 and rep["blocks_computed"] <= len(left) and rep["blocks_skipped"] >= 12 - len(left)

    cfg = load_config("blobs/tiny", [s for s in sets if s != "--set"], samples=24)
    ref = generate(cfg, tmp_path / "ref.zarr", executor=LocalExecutor(), progress=False)
    assert ref.done == 24
    a, b = DatasetStore.open(url), DatasetStore.open(tmp_path / "ref.zarr")
    for name in [*a.digest_arrays(), "done", "integrity/chunk_crc32c", "sample", "y", "x"]:
        assert np.asarray(a.group[name][...]).tobytes() == np.asarray(b.group[name][...]).tobytes(), name
    assert a.meta["config_hash"] == b.meta["config_hash"]


def test_flipped_byte_in_a_chunk_object_is_found(s3, tmp_path):
    url = f"s3://{BUCKET}/damage/d.zarr"
    cfg = load_config("blobs/tiny", ["simulator.n_blobs=1", "chunk=8"])
    generate(cfg, url, executor=LocalExecutor(), progress=False)  # in this process: no Ray
    assert DatasetStore.open(url).verify() == []
    key = "damage/d.zarr/images/c/2/0/0"
    body = bytearray(s3["client"].get_object(Bucket=BUCKET, Key=key)["Body"].read())
    body[len(body) // 2] ^= 0x40
    s3["client"].put_object(Bucket=BUCKET, Key=key, Body=bytes(body))

    proc = cli(s3, "info", url, "--verify", "--json")
    assert proc.returncode == 1, proc.stderr[-2000:]
    damaged = json.loads(proc.stdout)["damaged"]
    assert [(d["array"], d["chunk"], d["samples"]) for d in damaged] == [("images", 2, [16, 24])]
    with pytest.raises(StoreError, match=r"'images', samples 16\.\.23"):
        DatasetStore.open(url).images[16:24]  # a reader never returns the damaged chunk


def test_creation_is_published_whole_and_an_interrupted_one_is_finished(s3, tmp_path):
    """A store at a URL appears only with its root zarr.json (uploaded last); the objects an
    interrupted upload left are finished by the same creation, anything else is refused."""
    url = store_location(f"s3://{BUCKET}/create/c.zarr")
    assert isinstance(url, StoreURL)
    cfg = load_config("blobs/tiny", ["simulator.n_blobs=1", "chunk=8"])
    local = generate(cfg, tmp_path / "staged.zarr", executor=LocalExecutor(), progress=False)
    assert local.done == 32
    # what a creation killed mid-upload leaves: some array metadata, no root zarr.json
    from factory.engine import store_spec

    staged = DatasetStore.create(tmp_path / "fresh.zarr", **store_spec(cfg)).path
    part = {k: staged / k for k in ("images/zarr.json", "done/zarr.json", "sample/c/0")}
    url.upload(part)
    with pytest.raises(StoreError, match="no dataset store there"):
        DatasetStore.open(url)
    st = DatasetStore.create(url, **store_spec(cfg))  # the same creation again: finishes the upload
    assert st.missing_blocks() == st.blocks() and url.has("zarr.json")

    other = store_location(f"s3://{BUCKET}/create/foreign.zarr")
    s3["client"].put_object(Bucket=BUCKET, Key="create/foreign.zarr/notes.txt", Body=b"mine")
    with pytest.raises(OutputError, match="not an interrupted creation"):
        DatasetStore.create(other, **store_spec(cfg))
    assert keys(s3, "create/foreign.zarr/") == ["create/foreign.zarr/notes.txt"]  # untouched
    with pytest.raises(OutputError, match="already exists"):
        publish(staged, url)


def test_store_location_parsing(tmp_path, monkeypatch):
    from pathlib import Path

    monkeypatch.chdir(tmp_path)
    assert store_location("s3://bucket/a/b.zarr/") == "s3://bucket/a/b.zarr"
    assert isinstance(store_location(Path("s3://bucket/x.zarr")), StoreURL)  # pathlib folded the //
    assert store_location(Path("s3://bucket/x.zarr")) == "s3://bucket/x.zarr"
    assert store_location("rel/x.zarr") == tmp_path / "rel" / "x.zarr"
    assert store_location(f"file://{tmp_path}/y.zarr") == tmp_path / "y.zarr"
    with pytest.raises(StoreError, match="unknown storage protocol"):
        store_location("nosuchproto://b/x")
    monkeypatch.setenv("FACTORY_STORAGE_OPTIONS", "[1]")
    with pytest.raises(StoreError, match="JSON object"):
        store_location("s3://bucket/x.zarr").fs
