"""The cluster launch material is valid for the tools that consume it."""

import os
import subprocess
from pathlib import Path

import pytest
import yaml

CLUSTER = Path(__file__).resolve().parent.parent / "cluster"


def test_ray_launcher_yaml_passes_rays_own_schema():
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = yaml.safe_load((CLUSTER / "ray-cluster.yaml").read_text())
    assert config["provider"]["type"] == "local"
    validate_config(prepare_config(config))
    # dashboards stay on loopback
    assert "--dashboard-host=127.0.0.1" in " ".join(config["head_start_ray_commands"])


def test_kuberay_manifest_is_a_raycluster():
    doc = yaml.safe_load((CLUSTER / "kuberay-raycluster.yaml").read_text())
    assert doc["apiVersion"] == "ray.io/v1" and doc["kind"] == "RayCluster"
    head = doc["spec"]["headGroupSpec"]
    assert head["rayStartParams"]["dashboard-host"] == "127.0.0.1"
    groups = {g["groupName"]: g for g in doc["spec"]["workerGroupSpecs"]}
    assert "nvidia.com/gpu" in groups["gpu"]["template"]["spec"]["containers"][0]["resources"]["limits"]


def test_slurm_script_parses_and_refuses_no_command():
    script = CLUSTER / "slurm-ray.sbatch"
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    text = script.read_text()
    assert "ray start --head" in text and 'export RAY_ADDRESS=' in text and '"$@"' in text
    proc = subprocess.run(["bash", str(script)], capture_output=True, text=True, env={**os.environ})
    assert proc.returncode == 2 and "usage:" in proc.stderr


def test_connect_prefers_explicit_address_then_env(monkeypatch):
    import cluster.connect as cc

    calls = []
    probed = []
    monkeypatch.setattr(cc, "probe", probed.append)  # no traffic to these made-up addresses
    monkeypatch.setattr(cc.ray, "is_initialized", lambda: False)
    monkeypatch.setattr(cc.ray, "init", lambda **kw: calls.append(kw))
    monkeypatch.setattr(cc.ray, "cluster_resources", lambda: {"CPU": 8.0})
    monkeypatch.setattr(cc.ray, "nodes", lambda: [{"Alive": True}, {"Alive": True}])
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.1:6379")
    t = cc.connect()
    assert calls[-1]["address"] == "10.0.0.1:6379" and t.cpus == 8 and t.nodes == 2
    t = cc.connect("head:6379")
    assert calls[-1]["address"] == "head:6379" and "Ray cluster at head:6379" in t.describe()
    monkeypatch.delenv("RAY_ADDRESS")
    t = cc.connect(num_cpus=2)
    assert calls[-1]["address"] == "local" and calls[-1]["num_cpus"] == 2 and t.address is None  # a new local Ray
    assert probed == ["10.0.0.1:6379", "head:6379"]  # each address is probed before ray.init


def test_probe_refuses_a_closed_loopback_port_in_one_line():
    import socket

    import cluster.connect as cc
    from factory.errors import ClusterError

    with socket.socket() as s:  # a port nobody listens on: bind, never listen
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        with pytest.raises(ClusterError, match=f"cannot reach the Ray cluster at 127.0.0.1:{port}"):
            cc.probe(f"127.0.0.1:{port}", timeout=2)
        with pytest.raises(ClusterError):
            cc.probe(f"ray://127.0.0.1:{port}", timeout=2)
    cc.probe("auto")  # left to Ray
