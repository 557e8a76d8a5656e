"""Fault injection on ``--overwrite`` (issue 24): kills at random moments, a full disk, two writers.

For each of ``generate``, ``process preprocess`` and ``train`` a complete output is made first;
then ``--kills`` runs of the same command with other arguments and ``--overwrite`` are started
as real processes and SIGKILLed (with what they started: their own session) at a random moment
between 0.3 s and the length of an uninterrupted run.  Then: an ``--overwrite`` into a 600 KiB tmpfs (root only)
must fail with one error line and leave the old store as it was; two concurrent ``generate
--overwrite`` of one store must end with one writer refused (naming the other) and a store that
``info --verify`` passes, holding one run's data whole.

    python benchmarks/overwrite_faults.py [--kills 10] [--seed 0] [--json]

After each kill the output must be the old one byte for byte, or (a kill after the swap, while
the process was ending) the new one whole: "lost" counts anything else and must be 0.
Writes ``benchmarks/records/overwrite_faults.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from records import record  # noqa: E402

from factory.testing import file_tree  # noqa: E402

FACTORY = [sys.executable, "-m", "factory.cli", "--quiet"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "RAY_ADDRESS": ""}


def run(args: list, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([*FACTORY, *map(str, args)], env=ENV, capture_output=True, text=True, timeout=900, **kw)


def kill_at(args: list, delay: float) -> bool:
    """Start ``factory ARGS``, SIGKILL it (and its session) after ``delay`` s; True if it was still running."""
    proc = subprocess.Popen([*FACTORY, *map(str, args)], env=ENV, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(delay)
    running = proc.poll() is None
    try:
        os.kill(proc.pid, signal.SIGKILL)  # the driver dies without any chance to clean up
    except ProcessLookupError:
        pass
    proc.wait()
    time.sleep(0.5)
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # what the dead driver started (a local Ray), its session only
    except ProcessLookupError:
        pass
    return running


def whole(out: Path) -> bool:
    """A complete output: a store that `info --verify` passes with every sample done, or a run
    folder whose published model card reads."""
    if (out / "zarr.json").is_file():
        proc = run(["info", out, "--verify", "--json"])
        info = json.loads(proc.stdout) if proc.returncode == 0 else {}
        return bool(info) and info.get("done") == info.get("samples")
    card = subprocess.run([sys.executable, "-c", "import sys; from models.artifact import read_card; "
                           "read_card(sys.argv[1])", str(out / "model")], env=ENV, capture_output=True)
    return card.returncode == 0


def campaign(name: str, make: list, overwrite: list, out: Path, kills: int, rng: random.Random) -> dict:
    proc = run(make)
    assert proc.returncode == 0, proc.stderr
    t0 = time.monotonic()
    full = run(overwrite)  # an uninterrupted overwrite: how long a run lasts; its output is the old one
    duration = time.monotonic() - t0  # below (a replacement published would differ: its creation time)
    assert full.returncode == 0, full.stderr
    before = file_tree(out)
    lost = killed_mid_run = published = 0
    moments = []
    for _ in range(kills):
        delay = rng.uniform(0.3, max(0.5, duration))
        moments.append(round(delay, 2))
        killed_mid_run += kill_at(overwrite, delay)
        now = file_tree(out)
        if now != before:  # a kill after the swap: the new output, which must then be whole
            published += 1
            lost += not whole(out)
            before = now
    again = run(overwrite)  # the next overwrite removes the killed runs' temporaries and publishes whole
    stale = sorted(p.name for p in out.parent.iterdir() if ".factory-tmp-" in p.name)
    result = {"command": name, "kills": kills, "killed_mid_run": killed_mid_run, "lost": lost,
              "old_kept": kills - published, "new_published_whole": published - lost,
              "run_s": round(duration, 1), "moments_s": moments, "next_run_ok": again.returncode == 0,
              "stale_temporaries_after": len(stale)}
    print(json.dumps(result), file=sys.stderr, flush=True)
    return result


def disk_full(work: Path) -> dict:
    small = work / "small"
    small.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=600k", "tmpfs", str(small)], capture_output=True).returncode:
        return {"command": "generate into a full disk", "skipped": "cannot mount a tmpfs (not root?)"}
    try:
        out = small / "s.zarr"
        assert run(["generate", "blobs/tiny", "--out", out, "--samples", "16"]).returncode == 0
        before = file_tree(out)
        proc = run(["generate", "blobs/small", "--out", out, "--samples", "400", "--set", "chunk=10", "--overwrite"])
        errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
        return {"command": "generate --overwrite into a full disk", "exit": proc.returncode,
                "one_error_line": len(errors) == 1 and "Traceback" not in proc.stderr,
                "error": errors[0] if errors else proc.stderr[-300:], "lost": int(file_tree(out) != before)}
    finally:
        subprocess.run(["umount", "-l", str(small)], check=False)


def two_writers(work: Path) -> dict:
    out = work / "two.zarr"
    sets = ["--samples", "96", "--workers", "1", "--set", "simulator.delay_s=0.02"]
    assert run(["generate", "blobs/tiny", "--out", out, *sets]).returncode == 0
    a = subprocess.Popen([*FACTORY, "generate", "blobs/tiny", "--out", str(out), *sets, "--seed", "1", "--overwrite"],
                         env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(3.0)
    b = run(["generate", "blobs/tiny", "--out", out, *sets, "--seed", "2", "--overwrite"])
    a_out, a_err = a.communicate(timeout=900)
    verify = run(["info", out, "--verify", "--json"])
    info = json.loads(run(["info", out, "--json"]).stdout or "{}")
    return {"command": "two concurrent generate --overwrite", "first_exit": a.returncode, "second_exit": b.returncode,
            "second_refused_naming_holder": "is being written by pid" in b.stderr,
            "verify_exit": verify.returncode, "seed_of_result": info.get("seed"),
            "lost": int(verify.returncode != 0 or info.get("seed") not in (1, 2))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kills", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="overwrite-faults-") as tmp:
        work = Path(tmp)
        raw, net, run_dir = work / "raw.zarr", work / "net.zarr", work / "run"
        slow = ["--set", "simulator.delay_s=0.02", "--workers", "1"]
        results = [
            campaign("generate", ["generate", "blobs/tiny", "--out", raw, "--samples", "256", *slow],
                     ["generate", "blobs/tiny", "--out", raw, "--samples", "256", *slow, "--seed", "1", "--overwrite"],
                     raw, args.kills, rng),
            campaign("process preprocess", ["process", "preprocess", raw, "--out", net, "--mode", "scatter"],
                     ["process", "preprocess", raw, "--out", net, "--mode", "scatter", "--log-floor", "-3",
                      "--overwrite"], net, args.kills, rng),
            campaign("train", ["train", "pmd-cnn/tiny", "--store", net, "--out", run_dir, "--set", "run.backend=local",
                               "--set", "optim.epochs=2", "--set", "data.labels=[sigma0]"],
                     ["train", "pmd-cnn/tiny", "--store", net, "--out", run_dir, "--set", "run.backend=local",
                      "--set", "optim.epochs=3", "--set", "data.labels=[sigma0]", "--overwrite"], run_dir, args.kills, rng),
            disk_full(work),
            two_writers(work),
        ]
    lost = sum(r.get("lost", 0) for r in results)
    summary = {"kills": sum(r.get("kills", 0) for r in results), "lost": lost, "wall_s": round(time.monotonic() - t0, 1),
               "results": results}
    print(json.dumps(summary, indent=1) if args.json else "\n".join(json.dumps(r) for r in results)
          + f"\nlost: {lost} of {len(results)} checks")
    figures = {"kills": summary["kills"], "killed_mid_run": sum(r.get("killed_mid_run", 0) for r in results),
               "outputs_lost": lost, "wall": (summary["wall_s"], "s")}
    def note(r: dict) -> str:
        if "error" in r:
            return r["error"].split(": ", 2)[-1]  # the one error line, without the temporary path
        if "second_refused_naming_holder" in r:
            return (f"second writer refused naming the first: {r['second_refused_naming_holder']}; result: seed "
                    f"{r['seed_of_result']}, verify exit {r['verify_exit']}")
        return r.get("skipped", f"stale temporaries after the next run: {r.get('stale_temporaries_after')}")

    rows = [[r["command"], r.get("kills", ""), r.get("old_kept", ""), r.get("new_published_whole", ""),
             r.get("lost", ""), note(r)] for r in results]
    record("overwrite_faults", title="--overwrite under kills, a full disk and two writers", figures=figures,
           table={"columns": ["command", "kills", "old output kept", "new output published whole", "lost", "note"],
                  "rows": [[str(c) if not isinstance(c, (int, float)) or isinstance(c, bool) else c for c in row]
                           for row in rows]})
    sys.exit(1 if lost else 0)


if __name__ == "__main__":
    main()
