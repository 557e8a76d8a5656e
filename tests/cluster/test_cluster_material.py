"""The cluster launch material is valid for the tools that consume it."""

import copy
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CLUSTER = ROOT / "cluster"
KUBERAY_SCHEMA = Path(__file__).resolve().parents[1] / "fixtures" / "kuberay" / "raycluster-v1-openapi-schema.json"


def test_ray_launcher_yaml_passes_rays_own_schema():
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = yaml.safe_load((CLUSTER / "ray-cluster.yaml").read_text())
    assert config["provider"]["type"] == "local"
    validate_config(prepare_config(config))
    # dashboards stay on loopback
    assert "--dashboard-host=127.0.0.1" in " ".join(config["head_start_ray_commands"])


def test_ray_launcher_yaml_passes_the_json_schema_ray_ships():
    """The launcher config as written (before Ray fills defaults) against ray/autoscaler/ray-schema.json."""
    import jsonschema
    import ray.autoscaler

    schema = json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())
    config = yaml.safe_load((CLUSTER / "ray-cluster.yaml").read_text())
    jsonschema.validate(config, schema)
    with pytest.raises(jsonschema.ValidationError):  # the schema is strict: a misspelt key fails
        jsonschema.validate({**config, "max_worker": 3}, schema)
    # token authentication: every node starts Ray in token mode with the token the launcher copies
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        start = [c for c in config[key] if "ray start" in c]
        assert start and all("RAY_AUTH_MODE=token" in c for c in start), key
    assert "~/.ray/auth_token" in config["file_mounts"]
    text = (CLUSTER / "ray-cluster.yaml").read_text()
    assert "ray job submit" in text and "ray exec" not in text


def _kuberay_docs() -> dict[str, dict]:
    docs = [d for d in yaml.safe_load_all((CLUSTER / "kuberay-raycluster.yaml").read_text()) if d]
    return {d["kind"]: d for d in docs}


def _strict(schema):
    """An OpenAPI v3 structural schema made strict the way the API server's strict field
    validation is: an object with declared properties refuses undeclared ones."""
    schema = copy.deepcopy(schema)

    def walk(node):
        if isinstance(node, dict):
            if ("properties" in node and "additionalProperties" not in node
                    and not node.get("x-kubernetes-preserve-unknown-fields")):
                node["additionalProperties"] = False
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(schema)
    return schema


@pytest.fixture(scope="module")
def kuberay_schema():
    import jsonschema

    data = json.loads(KUBERAY_SCHEMA.read_text())
    assert data["source"]["tag"] == "v1.7.0" and len(data["source"]["commit"]) == 40
    schema = _strict(data["openAPIV3Schema"])
    jsonschema.Draft4Validator.check_schema(schema)  # OpenAPI v3 schemas are JSON Schema draft 4 (+ extensions)
    return schema


def test_kuberay_manifest_passes_the_vendored_crd_schema(kuberay_schema):
    import jsonschema

    def validate(doc, schema):
        jsonschema.Draft4Validator(schema).validate(doc)

    docs = _kuberay_docs()
    assert set(docs) == {"RayCluster", "PersistentVolumeClaim"}
    cluster = docs["RayCluster"]
    assert cluster["apiVersion"] == "ray.io/v1"
    validate(cluster, kuberay_schema)
    broken = copy.deepcopy(cluster)
    broken["spec"]["enableInTreeAutoscalling"] = True  # a typo the API server would refuse
    with pytest.raises(jsonschema.ValidationError, match="enableInTreeAutoscalling"):
        validate(broken, kuberay_schema)
    broken = copy.deepcopy(cluster)
    broken["spec"]["authOptions"]["mode"] = "tokens"
    with pytest.raises(jsonschema.ValidationError):
        validate(broken, kuberay_schema)

    # the PVC: its spec against the CRD's own copy of the core PersistentVolumeClaimSpec
    # (a pod template's ephemeral volume claim template)
    pvc = docs["PersistentVolumeClaim"]
    volume = kuberay_schema["properties"]["spec"]["properties"]["headGroupSpec"]["properties"]["template"][
        "properties"]["spec"]["properties"]["volumes"]["items"]["properties"]
    claim_spec = volume["ephemeral"]["properties"]["volumeClaimTemplate"]["properties"]["spec"]
    assert pvc["apiVersion"] == "v1" and pvc["metadata"]["name"]
    validate(pvc["spec"], claim_spec)
    with pytest.raises(jsonschema.ValidationError):
        validate({**pvc["spec"], "accessMode": ["ReadWriteMany"]}, claim_spec)
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]


def test_kuberay_manifest_autoscales_authenticates_and_mounts_the_shared_volume():
    import ray

    docs = _kuberay_docs()
    spec = docs["RayCluster"]["spec"]
    assert spec["rayVersion"] == ray.__version__  # the image's Ray = the Ray the package pins
    assert spec["enableInTreeAutoscaling"] is True  # min/maxReplicas do nothing without it
    assert spec["authOptions"] == {"mode": "token", "secretName": "factory-ray-token"}
    head = spec["headGroupSpec"]
    assert head["rayStartParams"]["dashboard-host"] == "127.0.0.1"
    claim = docs["PersistentVolumeClaim"]["metadata"]["name"]
    groups = {g["groupName"]: g for g in spec["workerGroupSpecs"]}
    assert "nvidia.com/gpu" in groups["gpu"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    for g in groups.values():
        assert g["minReplicas"] <= g["replicas"] <= g["maxReplicas"]
    for pod in [head["template"]["spec"], *(g["template"]["spec"] for g in groups.values())]:
        assert {"name": "data", "persistentVolumeClaim": {"claimName": claim}} in pod["volumes"]
        for c in pod["containers"]:
            assert {"name": "data", "mountPath": "/data"} in c["volumeMounts"]
            assert {"secretRef": {"name": "factory-s3", "optional": True}} in c["envFrom"]  # the S3 alternative


def test_the_pinned_ray_is_the_installed_one():
    import tomllib

    import ray
    from packaging.requirements import Requirement

    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    req = next(Requirement(d) for d in deps if Requirement(d).name == "ray")
    # one Ray version for every node, the KubeRay image and the client
    assert [(s.operator, s.version) for s in req.specifier] == [("==", ray.__version__)], req


def test_slurm_script_parses_and_refuses_no_command():
    script = CLUSTER / "slurm-ray.sbatch"
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    text = script.read_text()
    assert "ray start --head" in text and 'export RAY_ADDRESS=' in text and '"$@"' in text
    proc = subprocess.run(["bash", str(script)], capture_output=True, text=True, env={**os.environ})
    assert proc.returncode == 2 and "usage:" in proc.stderr


STUBS = {
    # each stub appends its name and argv (tab-separated) to $STUB_LOG in one write, so lines
    # from concurrent steps never interleave
    "srun": r"""#!/bin/bash
line=srun; for a in "$@"; do line+=$'\t'"$a"; done; printf '%s\n' "$line" >> "$STUB_LOG"  # one write: steps run concurrently
while [ $# -gt 0 ]; do case $1 in -w) shift 2;; -*) shift;; *) break;; esac; done
exec "$@"
""",
    "ray": r"""#!/bin/bash
line=ray; for a in "$@"; do line+=$'\t'"$a"; done; printf '%s\n' "$line" >> "$STUB_LOG"  # one write: steps run concurrently
case "$1" in
  start)
    printf 'auth\t%s\t%s\n' "${RAY_AUTH_MODE:-}" "${RAY_AUTH_TOKEN:-}" >> "$STUB_LOG"
    if [ -n "${STUB_HEAD_FAILS:-}" ] && [[ " $* " == *" --head "* ]]; then echo "head failed" >&2; exit 1; fi
    exec sleep 600 ;;   # --block: up until the step is killed
  status)
    n=$(( $(cat "$STUB_DIR/status-calls" 2>/dev/null || echo 0) + 1 )); echo "$n" > "$STUB_DIR/status-calls"
    if [ "$n" -le 2 ]; then echo "ConnectionError: Ray is not up yet" >&2; exit 1; fi
    up=$(grep -c "^ray	start" "$STUB_LOG")
    printf 'Node status\n---\nActive:\n'
    for i in $(seq "$up"); do echo " 1 node_$i"; done
    printf 'Idle:\n (no idle nodes)\nPending:\n (no pending nodes)\nRecent failures:\n (no failures)\n' ;;
esac
exit 0
""",
    "scontrol": "#!/bin/bash\nprintf '%s\\n' ${STUB_NODES//,/ }\n",
    "hostname": "#!/bin/bash\necho 10.9.8.7\n",
    "factory": r"""#!/bin/bash
line=factory; for a in "$@"; do line+=$'\t'"$a"; done; printf '%s\taddress=%s\n' "$line" "$RAY_ADDRESS" >> "$STUB_LOG"
exit "${STUB_JOB_STATUS:-0}"
""",
}


def run_slurm_script(tmp_path, *, job_status=0, nodes=("n1", "n2", "n3"), cpus="4", gpus=None, head_fails=False):
    """bash slurm-ray.sbatch factory generate ... with stub srun/ray/scontrol/hostname/factory
    on PATH that record their calls; (exit status, calls, stderr, seconds)."""
    stubs = tmp_path / "bin"
    stubs.mkdir()
    for name, text in STUBS.items():
        (stubs / name).write_text(text)
        (stubs / name).chmod(0o755)
    log = tmp_path / "calls.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "SLURM_"))}
    env.update(PATH=f"{stubs}:{Path(sys.executable).parent}:{env['PATH']}", STUB_LOG=str(log), STUB_DIR=str(tmp_path),
               STUB_NODES=",".join(nodes), STUB_JOB_STATUS=str(job_status), SLURM_JOB_NODELIST=",".join(nodes),
               SLURM_CPUS_PER_TASK=cpus, SLURM_JOB_ID="4242", RAY_POLL_S="0.05", RAY_WAIT_S="20")
    if gpus:
        env["SLURM_GPUS_ON_NODE"] = gpus
    if head_fails:
        env["STUB_HEAD_FAILS"] = "1"
    t0 = time.perf_counter()
    proc = subprocess.run(["bash", str(CLUSTER / "slurm-ray.sbatch"), "factory", "generate", "msft/tiny", "--out", "s.zarr"],
                          env=env, capture_output=True, text=True, timeout=60, cwd=tmp_path)
    calls = [line.split("\t") for line in log.read_text().splitlines()]
    return proc.returncode, calls, proc.stderr, time.perf_counter() - t0


def test_slurm_script_failing_command_still_stops_ray_and_exits_with_its_status(tmp_path):
    rc, calls, err, _ = run_slurm_script(tmp_path, job_status=3)
    assert rc == 3, err
    names = [c[0] + (" " + c[1] if c[0] == "ray" else "") for c in calls]
    job = names.index("factory")
    assert calls[job][1:] == ["generate", "msft/tiny", "--out", "s.zarr", "address=10.9.8.7:6379"]
    assert "ray stop" in names[job + 1:]  # the cleanup ran after the failed command
    # every srun step carries this job's CPUs; every Ray node gets them too
    srun = [c for c in calls if c[0] == "srun"]
    assert len(srun) == 1 + 3 and all("--cpus-per-task=4" in c for c in srun), srun
    starts = [c for c in calls if c[:2] == ["ray", "start"]]
    assert len(starts) == 3 and sum("--head" in c for c in starts) == 1
    assert all("--num-cpus=4" in c and "--block" in c for c in starts)
    assert "--dashboard-host=127.0.0.1" in next(c for c in starts if "--head" in c)
    # readiness: polled with `ray status` (not up twice, then up) before the command, no fixed sleep
    status = [i for i, n in enumerate(names) if n == "ray status"]
    assert len(status) >= 3 and status[2] < job
    assert "sleep 20" not in (CLUSTER / "slurm-ray.sbatch").read_text()
    # token authentication: one fresh 256-bit token for the job, the same on every node
    auth = [c for c in calls if c[0] == "auth"]
    assert len(auth) == 3 and {a[1] for a in auth} == {"token"}
    assert len({a[2] for a in auth}) == 1 and re.fullmatch(r"[0-9a-f]{64}", auth[0][2])


def test_slurm_script_success_and_gpus(tmp_path):
    rc, calls, err, seconds = run_slurm_script(tmp_path, nodes=("g1", "g2"), cpus="8", gpus="2")
    assert rc == 0, err
    srun = [c for c in calls if c[0] == "srun"]
    assert all("--cpus-per-task=8" in c and "--gres=gpu:2" in c for c in srun), srun
    assert all("--num-gpus=2" in c for c in calls if c[:2] == ["ray", "start"])
    assert [c[0] + c[1] for c in calls if c[0] in ("factory", "ray") and c[1] in ("generate", "stop")] == [
        "factorygenerate", "raystop"]
    assert seconds < 20  # polled, not slept


def test_slurm_script_head_that_never_comes_up_fails_without_running_the_command(tmp_path):
    rc, calls, err, _ = run_slurm_script(tmp_path, head_fails=True)
    assert rc == 1 and "error: the Ray head did not come up on n1" in err, err
    assert not any(c[0] == "factory" for c in calls)
    assert ["ray", "stop", "--force"] in calls


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
