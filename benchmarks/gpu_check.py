"""GPU check: one prepared script that measures, on a lent GPU, what the project needs to know.

    python benchmarks/gpu_check.py                          # auto device; on a GPU: --scale gpu, < 8 min
    python benchmarks/gpu_check.py --device cpu --scale tiny --out /tmp/x.json   # the ~1-2 min smoke run
    python benchmarks/gpu_check.py --only msft_paper,stream_resnet --budget-s 120  # a rerun of some sections

Sections (in this order; ``--only`` / ``--skip`` take their names):

- ``tdse_paper_grid``: split-operator steps/s of :class:`factory.tdse.Propagator` on the paper's
  4096 x 2048 grid (batch 1, double and single precision; batch 10) over a fixed number of steps,
  and the full PMD (``n_steps`` of the paper preset, ~48,000) **extrapolated** from it;
- ``tdse_pmd_end_to_end``: a whole PMD (ground state + propagation + PMD) through
  :func:`factory.tdse.compute_pmds` at the tiny and small presets;
- ``tdse_intensity_batch``: one R, 10 intensities (:func:`factory.tdse.intensity_ladder`)
  propagated together (batch 10) against one at a time: PMDs/s, plus the PMDs/s other batch
  sizes would give (extrapolated from their step rate);
- ``tdse_fast_batch``: the same at the ``fast`` preset, if ``make_config("fast")`` knows one;
- ``msft_paper``: images/s of :class:`factory.msft.MSFTSimulator` (voxelise + MSFT + detector)
  at the paper preset (192^3 -> 512 -> 128 x 128) on the torch backend, batched and one by one;
- ``resnet_inference`` / ``pmd_cnn_inference``: images/s of the ResNet-34 (tanh, 128 x 128) and
  the PMD CNN (128 x 256) of :mod:`models.networks` at batch 1 / 64 / 256 (eval, no_grad);
- ``resnet_train_epoch`` / ``pmd_cnn_train_epoch``: one training epoch (forward, MSE, backward,
  SGD step, as in :mod:`models.train_loop`) over the paper set's size (20,046 / 2,250 images) of
  **synthetic random inputs** (a speed measurement: the values do not matter);
- ``stream_resnet``: frames/s and latency of the ResNet-34 through
  :class:`models.stream.pipeline.StreamPredictor` (the real preprocessing; random weights) fed by
  an in-process source.

Robustness: each measurement runs in its own try/except (the error text goes into the JSON and
the run carries on); each section gets a share of ``--budget-s`` (time a section leaves unused
goes to the ones after it) and skips its remaining repeats, or a measurement it predicts would
not fit, once over it; progress lines are printed (flushed) as figures arrive; the JSON is
rewritten after every section, so a run killed by a time limit still leaves what it measured.
Exit status 0 when no measurement failed, 1 otherwise.

Record: a run at ``--scale gpu`` (or with ``--record``) also writes its figures to
benchmarks/records/gpu_check.json (benchmarks/records.py; with ``$OUT`` set, to
``$OUT/records/gpu_check.json``, to be copied there), from which benchmarks/render.py writes
BENCHMARKS.md.  The smoke run writes none unless asked.

``--scale tiny`` runs the same code at the smallest sizes (tiny presets, 3 paper-grid steps,
small networks, shortened propagations; every such change is written into the figures' notes) so
that the whole script finishes in a minute or two on 2 CPU cores: the test suite runs it that way
(tests/benchmarks/test_gpu_check.py) so that it cannot rot.  Its numbers are a smoke run, not a benchmark.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import gc
import json
import math
import os
import platform
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from machine import cpu_model  # noqa: E402  benchmarks/machine.py (the script's folder is on sys.path)
import records  # noqa: E402  benchmarks/records.py (notes the load average at the start)

SCHEMA = "gpu_check/1"

# What each scale runs.  "gpu": the papers' sizes; "tiny": the smallest sizes that still go through
# the same code (the smoke run of the test suite).
SCALES: dict[str, dict[str, Any]] = {
    "gpu": {
        "paper_steps": 300, "paper_warmup": 2, "paper_batches": [(1, "double"), (1, "single"), (10, "double")],
        "e2e_presets": ["tiny", "small"], "e2e_t_end": None,
        "ladder_preset": "small", "ladder_t_end": None, "ladder_one_by_one": 3, "probe_batches": [1, 10, 32, 100],
        "probe_steps": 40, "fast_allowed": True,
        "msft_preset": "paper", "msft_batch": 64, "msft_rounds": 5, "msft_single": 8,
        "resnet": {"name": "resnet-tanh", "kwargs": {"input_shape": [128, 128]}, "label": "ResNet-34 (tanh), 128 x 128"},
        "pmd_cnn": {"name": "pmd-cnn", "kwargs": {"input_shape": [128, 256]}, "label": "PMD CNN, 128 x 256"},
        "infer_batches": [1, 64, 256], "infer_seconds": 1.5,
        "resnet_epoch": (20046, 32), "pmd_epoch": (2250, 30),
        "stream_frames": 6000, "stream_batch": 64, "stream_shape": [128, 128],
    },
    "tiny": {
        "paper_steps": 3, "paper_warmup": 1, "paper_batches": [(1, "double")],
        "e2e_presets": ["tiny"], "e2e_t_end": 0.25,
        "ladder_preset": "tiny", "ladder_t_end": 0.1, "ladder_one_by_one": 2, "probe_batches": [1, 10],
        "probe_steps": 5, "fast_allowed": "if-cheap",
        "msft_preset": "tiny", "msft_batch": 4, "msft_rounds": 2, "msft_single": 2,
        "resnet": {"name": "resnet-tanh", "kwargs": {"input_shape": [64, 64], "stacks": [1, 1, 1, 1],
                                                     "widths": [8, 16, 32, 64], "stem": 8},
                   "label": "ResNet (tanh), 1-1-1-1 blocks of 8..64 filters, 64 x 64 (tiny scale)"},
        "pmd_cnn": {"name": "pmd-cnn", "kwargs": {"input_shape": [32, 64], "filters": 8},
                    "label": "PMD CNN, 8 filters, 32 x 64 (tiny scale)"},
        "infer_batches": [1, 8, 32], "infer_seconds": 0.2,
        "resnet_epoch": (64, 16), "pmd_epoch": (60, 30),
        "stream_frames": 96, "stream_batch": 16, "stream_shape": [64, 64],
    },
}

# Share of the budget per section (relative weights; unused time rolls over to later sections).
SECTIONS = {
    "tdse_paper_grid": 80,
    "tdse_pmd_end_to_end": 40,
    "tdse_intensity_batch": 50,
    "tdse_fast_batch": 35,
    "msft_paper": 40,
    "resnet_inference": 25,
    "pmd_cnn_inference": 20,
    "resnet_train_epoch": 50,
    "pmd_cnn_train_epoch": 20,
    "stream_resnet": 35,
}

R_AU = 2.0  # internuclear distance of the TDSE runs, a.u.
I_PEAK = 3e14  # W/cm^2: one PMD
I_LADDER_TOP = 4e14  # W/cm^2: the 10-intensity ladder I_k = I0 (k + 1) / 10


# -- output ------------------------------------------------------------------------------------------
class Report:
    """The JSON being built, written atomically after every section; progress lines as it goes."""

    def __init__(self, out: Path, quiet: bool):
        self.out = out
        self.stream = sys.stderr if quiet else sys.stdout
        self.data: dict[str, Any] = {"schema": SCHEMA, "finished": False, "info": {}, "sections": {}}

    def say(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

    def write(self) -> None:
        self.out.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.out.with_name(self.out.name + ".tmp")
        tmp.write_text(json.dumps(self.data, indent=1, default=_jsonable) + "\n")
        os.replace(tmp, self.out)


def _jsonable(v):
    if isinstance(v, (np.floating, np.integer)):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    return str(v)


class Section:
    """One section's record: figures (value + unit), notes, errors; its time budget."""

    def __init__(self, name: str, report: Report, deadline: float, device: str):
        self.name, self.report, self.deadline, self.device = name, report, deadline, device
        self.t0 = time.perf_counter()
        self.rec: dict[str, Any] = {"status": "running", "figures": {}, "notes": [], "errors": [],
                                    "budget_s": round(deadline - self.t0, 1), "load_avg_start": _load()}

    def left(self) -> float:
        return self.deadline - time.perf_counter()

    def over(self) -> bool:
        return self.left() <= 0

    def figure(self, name: str, value: float, unit: str, note: str | None = None, extrapolated: bool = False,
               **extra: Any) -> None:
        f: dict[str, Any] = {"value": float(value), "unit": unit}
        if extrapolated:
            f["extrapolated"] = True
        if note:
            f["note"] = note
        f.update(extra)
        self.rec["figures"][name] = f
        tag = " (extrapolated)" if extrapolated else ""
        self.report.say(f"  {self.name}.{name} = {_fmt(value)} {unit}{tag}" + (f"  [{note}]" if note else ""))

    def note(self, text: str) -> None:
        self.rec["notes"].append(text)
        self.report.say(f"  {self.name}: {text}")

    @contextlib.contextmanager
    def measure(self, label: str):
        """Run one measurement: an exception is recorded (with its last frames) and the run goes on."""
        try:
            yield
        except Exception as exc:  # noqa: BLE001 - every failure is recorded, none stops the run
            tb = traceback.format_exception(type(exc), exc, exc.__traceback__)
            text = f"{label}: {type(exc).__name__}: {exc}"
            self.rec["errors"].append({"measurement": label, "error": text, "traceback": "".join(tb[-4:])[-3000:]})
            self.report.say(f"  {self.name}: ERROR in {label}: {type(exc).__name__}: {exc}")
        finally:
            _free()

    def fits(self, label: str, predicted_s: float) -> bool:
        """True when a measurement predicted to take ``predicted_s`` fits the time left; else a note."""
        if predicted_s <= self.left():
            return True
        self.note(f"{label}: skipped, predicted {predicted_s:.1f} s > {max(self.left(), 0):.1f} s left in the section budget")
        return False


def _fmt(v: float) -> str:
    if v == 0 or not math.isfinite(v):
        return str(v)
    if abs(v) >= 1e5 or abs(v) < 1e-3:
        return f"{v:.3e}"
    return f"{v:.4g}"


def _load() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def _free() -> None:
    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except Exception:  # noqa: BLE001
        pass


# -- context ------------------------------------------------------------------------------------------
class Ctx:
    """What every section needs: the device, the scale's sizes, the torch device and a Backend factory."""

    def __init__(self, args: argparse.Namespace, device: str, scale: str):
        import torch

        self.args, self.device, self.scale, self.cfg = args, device, scale, SCALES[scale]
        self.torch = torch
        self.tdev = torch.device(device)
        self.threads = args.threads
        self.tmp = Path(tempfile.mkdtemp(prefix="gpu-check-"))

    def backend(self, name: str | None = None):
        """A factory Backend: torch on this device by default (``--tdse-backend`` may say otherwise)."""
        from factory.backend import Backend

        name = name or self.args.tdse_backend
        if name == "torch":
            return Backend.create("torch", threads=self.threads, device=self.device)
        return Backend.create(name, threads=self.threads, planner="FFTW_ESTIMATE" if name in ("fftw", "auto") else None)

    def sync(self) -> None:
        if self.device.startswith("cuda"):
            self.torch.cuda.synchronize()


def machine_info(device: str, scale: str, args: argparse.Namespace) -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "host": platform.node(),
        "cpu_model": cpu_model(),
        "cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "load_avg_start": _load(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "device": device,
        "scale": scale,
        "budget_s": args.budget_s,
        "torch_threads": args.threads,
        "tdse_backend": args.tdse_backend,
        "argv": sys.argv[1:],
    }
    if device.startswith("cuda"):
        props = torch.cuda.get_device_properties(torch.device(device))
        info.update(gpu=props.name, gpu_memory_gib=round(props.total_memory / 2**30, 2),
                    gpu_count=torch.cuda.device_count(),
                    gpu_capability=f"{props.major}.{props.minor}")
        torch.zeros(1, device=device).sum().item()  # create the CUDA context before any timing
    else:
        info.update(gpu=None, gpu_memory_gib=None,
                    cuda_available=bool(torch.cuda.is_available()))
    return info


# -- TDSE ---------------------------------------------------------------------------------------------
def _gaussian(grid) -> np.ndarray:
    psi = np.outer(np.exp(-0.5 * grid.y**2), np.exp(-0.5 * grid.x**2)).astype(np.complex128)
    return psi / np.sqrt((np.abs(psi) ** 2).sum() * grid.area_element)


def _propagator(cfg, batch: int, backend, intensities=None):
    """A Propagator on ``cfg``'s grid with its mask, pulses and collection window; the initial
    state is a normalised Gaussian (a step costs the same whatever the state)."""
    from factory.tdse import Propagator, absorbing_mask, potential

    grid = cfg.build_grid()
    V = potential(cfg.molecule("H2+"), R_AU, 0.0, grid.x, grid.y)
    intensities = intensities if intensities is not None else [I_PEAK] * batch
    pulses = [cfg.pulse_for(float(i), 0.0) for i in intensities]
    mask = absorbing_mask(grid, cfg.mask.radius, cfg.mask.beta)
    return Propagator(grid, V, _gaussian(grid), cfg.dt, pulses, cfg.n_steps(), mask, cfg.mask.every, collect=True,
                      backend=backend, precision=cfg.precision, k_window=cfg.collect_window())


def _step_rate(ctx: Ctx, sec: Section, prop, steps: int, chunk: int | None = None, warmup: int = 2) -> tuple[float, int]:
    """(steps/s, steps timed) over ``steps`` steps after ``warmup`` steps, in chunks; stops early
    (at least one chunk) when the section's budget is spent."""
    prop.run(warmup)
    ctx.sync()
    chunk = chunk or max(1, min(steps, 20))
    done, t0 = 0, time.perf_counter()
    while done < steps:
        n = min(chunk, steps - done)
        prop.run(n)
        ctx.sync()
        done += n
        if sec.over() and done < steps:
            sec.note(f"stopped after {done} of {steps} steps (section budget)")
            break
    return done / (time.perf_counter() - t0), done


def _runs(intensities) -> list[dict[str, Any]]:
    return [{"molecule": "H2+", "R": R_AU, "alpha": 0.0, "intensity": float(i), "cep": 0.0} for i in intensities]


def sec_tdse_paper_grid(ctx: Ctx, sec: Section) -> None:
    from factory.tdse import make_config

    sc = ctx.cfg
    for batch, precision in sc["paper_batches"]:
        label = f"batch{batch}_{precision}"
        if sec.over():
            sec.note(f"{label}: skipped, section budget spent")
            continue
        with sec.measure(label):
            cfg = make_config("paper", backend=ctx.args.tdse_backend, precision=precision, batch=batch)
            if ctx.device.startswith("cuda"):
                ctx.torch.cuda.reset_peak_memory_stats()
            t0 = time.perf_counter()
            prop = _propagator(cfg, batch, ctx.backend())
            ctx.sync()
            setup = time.perf_counter() - t0
            warm = sc["paper_warmup"]
            rate, done = _step_rate(ctx, sec, prop, sc["paper_steps"], chunk=10 if ctx.scale == "gpu" else 1, warmup=warm)
            del prop
            g, n = cfg.grid, cfg.n_steps()
            if ctx.device.startswith("cuda"):
                sec.rec.setdefault("peak_gpu_memory_gib", {})[label] = round(ctx.torch.cuda.max_memory_allocated() / 2**30, 2)
            where = f"{g.nx} x {g.ny}, dt {cfg.dt}, {precision}, batch {batch}"
            sec.figure(f"steps_per_s_{label}", rate, "steps/s", f"{where}; {done} steps timed after {warm} warm-up step(s)")
            sec.figure(f"setup_s_{label}", setup, "s", "grid, potential, mask, Propagator built and moved to the device")
            sec.figure(f"full_pmd_s_{label}", n / rate, "s", extrapolated=True,
                       note=f"{n} steps (t_end {cfg.t_end} t_f) / measured rate; propagation only (no ground state, "
                            f"no PMD extraction); batch {batch}")
            if batch > 1:
                sec.figure(f"pmds_per_hour_{label}", 3600.0 * batch * rate / n, "PMDs/h", extrapolated=True,
                           note=f"{batch} PMDs per {n}-step propagation at the measured rate")


def _e2e_config(preset: str, ctx: Ctx, t_end: float | None, **more):
    from factory.tdse import config_for

    over: dict[str, Any] = {"backend": ctx.args.tdse_backend, **more}
    if t_end is not None:
        over["t_end"] = t_end
    return config_for("H2+", R_AU, I_PEAK, preset=preset, **over)


def sec_tdse_pmd_end_to_end(ctx: Ctx, sec: Section) -> None:
    from factory.tdse import compute_pmds

    sc = ctx.cfg
    for preset in sc["e2e_presets"]:
        label = f"{preset}"
        if sec.over():
            sec.note(f"{label}: skipped, section budget spent")
            continue
        with sec.measure(label):
            cfg = _e2e_config(preset, ctx, sc["e2e_t_end"], batch=1)
            be = ctx.backend()
            probe = _propagator(cfg, 1, be)
            rate, _ = _step_rate(ctx, sec, probe, sc["probe_steps"])
            del probe
            n = cfg.n_steps()
            if not sec.fits(label, 1.3 * n / rate + 2.0):
                sec.figure(f"pmd_s_{label}", n / rate, "s", extrapolated=True,
                           note=f"propagation only: {n} steps at {rate:.4g} steps/s (a {sc['probe_steps']}-step probe)")
                continue
            t0 = time.perf_counter()
            res = compute_pmds(cfg, _runs([I_PEAK]), backend=be)
            ctx.sync()
            dt = time.perf_counter() - t0
            short = "" if sc["e2e_t_end"] is None else f" (t_end shortened to {cfg.t_end} t_f at --scale tiny)"
            g = cfg.grid
            sec.figure(f"pmd_s_{label}", dt, "s",
                       f"{preset} preset, {g.nx} x {g.ny}, {n} steps{short}; ground state + propagation + PMD "
                       f"{res[0].pmd.shape[1]} x {res[0].pmd.shape[0]}, batch 1")
            sec.figure(f"steps_per_s_{label}", rate, "steps/s", f"{sc['probe_steps']}-step probe, batch 1")


def _batch_section(ctx: Ctx, sec: Section, preset: str, t_end: float | None, one_by_one: int, batch: int = 10) -> None:
    """One R, ``batch`` intensities: batched vs one at a time (PMDs/s), plus other batch sizes extrapolated."""
    from factory.tdse import compute_pmds, config_for, intensity_ladder
    from factory.tdse.api import geometry_key, ground_state_for

    sc = ctx.cfg
    intensities = intensity_ladder(I_LADDER_TOP, batch)
    over: dict[str, Any] = {"backend": ctx.args.tdse_backend, "batch": batch}
    if t_end is not None:
        over["t_end"] = t_end
    cfg = config_for("H2+", R_AU, list(intensities), preset=preset, **over)
    be = ctx.backend()
    n = cfg.n_steps()
    g = cfg.grid
    short = "" if t_end is None else f", t_end shortened to {t_end} t_f at --scale tiny"
    where = f"{preset} preset, {g.nx} x {g.ny}, {n} steps{short}"
    sec.rec["setup"] = where
    rates: dict[int, float] = {}
    for b in sc["probe_batches"]:  # step rates (also the warm-up and the time predictions)
        if sec.over():
            sec.note(f"probe batch {b}: skipped, section budget spent")
            continue
        with sec.measure(f"probe_batch{b}"):
            prop = _propagator(cfg, b, be, intensities=[I_PEAK] * b)
            rates[b], _ = _step_rate(ctx, sec, prop, sc["probe_steps"])
            del prop
            sec.figure(f"pmds_per_s_batch{b}_from_step_rate", b * rates[b] / n, "PMDs/s", extrapolated=True,
                       note=f"{where}; {b} x {rates[b]:.4g} steps/s / {n} steps (propagation only)")
    grounds: dict[tuple, Any] = {}
    with sec.measure("ground_state"):
        t0 = time.perf_counter()
        grounds[geometry_key("H2+", R_AU, 0.0)] = ground_state_for(cfg, "H2+", R_AU, 0.0, backend=be)
        ctx.sync()
        sec.figure("ground_state_s", time.perf_counter() - t0, "s", f"{where}; shared by every run below")
    if not grounds:
        return
    runs = _runs(intensities)
    t_batch = None
    with sec.measure(f"batch{batch}"):
        pred = n / rates[batch] if batch in rates else 0.0
        if sec.fits(f"batch{batch}", 1.3 * pred + 1.0):
            t0 = time.perf_counter()
            out = compute_pmds(cfg, runs, grounds, backend=be)
            ctx.sync()
            t_batch = time.perf_counter() - t0
            assert len(out) == batch and all(np.isfinite(r.pmd).all() for r in out), "non-finite PMD"
            sec.figure(f"pmds_per_s_batch{batch}", batch / t_batch, "PMDs/s",
                       f"{where}; {batch} intensities {intensities[0]:.2g}..{intensities[-1]:.2g} W/cm^2 in one "
                       f"compute_pmds call ({t_batch:.3g} s; ground state cached)")
    t_one = None
    with sec.measure("one_at_a_time"):
        pred = n / rates[1] if 1 in rates else 0.0
        k = one_by_one
        while k > 1 and 1.3 * k * pred > sec.left():
            k -= 1
        if sec.fits("one_at_a_time", 1.3 * k * pred + 1.0):
            t0 = time.perf_counter()
            for run in runs[:k]:
                compute_pmds(cfg, [run], grounds, backend=be)
            ctx.sync()
            t_one = (time.perf_counter() - t0) / k
            sec.figure("pmds_per_s_one_at_a_time", 1.0 / t_one, "PMDs/s",
                       f"{where}; {k} of the same intensities, one compute_pmds call each ({t_one:.3g} s per PMD)")
    if t_batch and t_one:
        sec.figure(f"speedup_batch{batch}_vs_one_at_a_time", t_one * batch / t_batch, "x")


def sec_tdse_intensity_batch(ctx: Ctx, sec: Section) -> None:
    sc = ctx.cfg
    _batch_section(ctx, sec, sc["ladder_preset"], sc["ladder_t_end"], sc["ladder_one_by_one"])


def sec_tdse_fast_batch(ctx: Ctx, sec: Section) -> None:
    from factory.tdse import make_config

    try:
        fast = make_config("fast")
    except Exception as exc:  # noqa: BLE001 - a missing preset is a skip, not a failure
        sec.rec["status"] = "skipped"
        sec.rec["reason"] = f"no 'fast' TDSE preset in this checkout (make_config('fast'): {str(exc).splitlines()[0][:200]})"
        sec.note(sec.rec["reason"])
        return
    sc = ctx.cfg
    t_end = None
    if sc["fast_allowed"] == "if-cheap":  # the smoke run: shorten it to the tiny preset's cost
        tiny = make_config("tiny")
        cost = lambda c: c.grid.nx * c.grid.ny * c.n_steps()  # noqa: E731
        if cost(fast) > 0.2 * cost(tiny):
            t_end = max(0.01, fast.t_end * 0.2 * cost(tiny) / cost(fast))
    _batch_section(ctx, sec, "fast", t_end, sc["ladder_one_by_one"])


# -- MSFT ---------------------------------------------------------------------------------------------
def sec_msft_paper(ctx: Ctx, sec: Section) -> None:
    from factory.config import load_config
    from factory.msft import MSFTSimulator
    from factory.simulation import rng_for

    sc = ctx.cfg
    cfg = load_config(f"msft/{sc['msft_preset']}", ["simulator.backend=torch"]).simulator
    sim = MSFTSimulator(cfg, threads=ctx.threads)
    sim.backend = ctx.backend("torch")  # the simulator's Backend, on the chosen device
    where = (f"{sc['msft_preset']} preset: {cfg.n_voxels}^3 voxels -> pad {cfg.pad} -> {cfg.crop} x {cfg.crop}, "
             f"{cfg.precision}, method {cfg.method}, torch on {ctx.device}")
    sec.rec["setup"] = where
    B = sc["msft_batch"]
    params = [sim.sample_params(0, i) for i in range(B)]
    with sec.measure(f"batch{B}"):
        sim.simulate_batch(params, [rng_for(0, i, 1) for i in range(B)])  # warm-up: caches, plans
        ctx.sync()
        ts = []
        for r in range(sc["msft_rounds"]):
            if sec.over() and ts:
                sec.note(f"batch{B}: stopped after {len(ts)} rounds (section budget)")
                break
            t0 = time.perf_counter()
            out = sim.simulate_batch(params, [rng_for(1 + r, i, 1) for i in range(B)])
            ctx.sync()
            ts.append(time.perf_counter() - t0)
        assert all(np.isfinite(o.image).all() for o in out), "non-finite image"
        sec.figure(f"images_per_s_batch{B}", B / float(np.median(ts)), "images/s",
                   f"{where}; simulate_batch (voxelise + MSFT + detector + copy back), median of {len(ts)} rounds")
    with sec.measure("one_at_a_time"):
        ts = []
        for i in range(sc["msft_single"]):
            if sec.over() and ts:
                break
            t0 = time.perf_counter()
            sim.simulate(params[i % B], rng_for(2, i, 1))
            ctx.sync()
            ts.append(time.perf_counter() - t0)
        sec.figure("images_per_s_one_at_a_time", 1.0 / float(np.median(ts)), "images/s",
                   f"{where}; simulate (host voxelisation + MSFT + detector), median of {len(ts)} images")


# -- networks -----------------------------------------------------------------------------------------
def _net(ctx: Ctx, spec: dict[str, Any]):
    from models.networks import build, count_parameters

    model = build(spec["name"], **spec["kwargs"]).to(ctx.tdev)
    return model, count_parameters(model)


def _inference(ctx: Ctx, sec: Section, key: str) -> None:
    torch = ctx.torch
    sc = ctx.cfg
    spec = sc[key]
    model, n_par = _net(ctx, spec)
    model.eval()
    shape = spec["kwargs"]["input_shape"]
    sec.rec["setup"] = f"{spec['label']}, {n_par:,} parameters, fp32, eval mode, no_grad, random inputs on the device"
    for b in sc["infer_batches"]:
        if sec.over():
            sec.note(f"batch {b}: skipped, section budget spent")
            continue
        with sec.measure(f"batch{b}"), torch.no_grad():
            x = torch.randn(b, *shape, device=ctx.tdev)
            model(x)
            model(x)  # warm-up (cuDNN algorithm choice)
            ctx.sync()
            n, t0 = 0, time.perf_counter()
            while True:
                model(x)
                n += 1
                ctx.sync()
                dt = time.perf_counter() - t0
                if (dt >= sc["infer_seconds"] and n >= 3) or (sec.over() and n >= 1):
                    break
            sec.figure(f"images_per_s_batch{b}", n * b / dt, "images/s", f"{n} call(s) of batch {b}")
            if b == 1:
                sec.figure("latency_ms_batch1", 1e3 * dt / n, "ms")


def _epoch(ctx: Ctx, sec: Section, key: str, epoch_key: str) -> None:
    torch = ctx.torch
    sc = ctx.cfg
    spec = sc[key]
    images, batch = sc[epoch_key]
    model, n_par = _net(ctx, spec)
    shape = spec["kwargs"]["input_shape"]
    pin = ctx.device.startswith("cuda")
    # a few distinct host batches, cycled, copied to the device every step as the training loop does
    pool = [(torch.randn(batch, *shape), torch.randn(batch, model.head.out_features)) for _ in range(4)]
    if pin:
        pool = [(x.pin_memory(), y.pin_memory()) for x, y in pool]
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    loss_fn = torch.nn.functional.mse_loss
    sec.rec["setup"] = (f"{spec['label']}, {n_par:,} parameters, fp32; minibatch {batch}; SGD (momentum 0.9); MSE; "
                        "synthetic random inputs and targets (a speed measurement), host batches copied to the "
                        "device each step; no data loading, no validation")

    def step(i: int) -> None:
        x, y = pool[i % len(pool)]
        x, y = x.to(ctx.tdev, non_blocking=True), y.to(ctx.tdev, non_blocking=True)
        loss = loss_fn(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    with sec.measure("epoch"):
        model.train()
        step(0)
        step(1)  # warm-up
        ctx.sync()
        steps = math.ceil(images / batch)
        check = 10 if ctx.device.startswith("cuda") else 1
        done, seen, t0 = 0, 0, time.perf_counter()
        for i in range(steps):
            step(i)
            done += 1
            seen += min(batch, images - i * batch)
            if i % check == check - 1:  # on a GPU a sync every step would cost throughput
                ctx.sync()
                if sec.over():
                    break
        ctx.sync()
        dt = time.perf_counter() - t0
        full = done == steps
        sec.figure("train_images_per_s", seen / dt, "images/s", f"{seen} images in {done} steps")
        sec.figure("epoch_s", dt * images / seen, "s", extrapolated=not full,
                   note=f"one epoch of {images} images" + ("" if full else f" (stopped at {seen} by the section budget)"))


def sec_resnet_inference(ctx: Ctx, sec: Section) -> None:
    _inference(ctx, sec, "resnet")


def sec_pmd_cnn_inference(ctx: Ctx, sec: Section) -> None:
    _inference(ctx, sec, "pmd_cnn")


def sec_resnet_train_epoch(ctx: Ctx, sec: Section) -> None:
    _epoch(ctx, sec, "resnet", "resnet_epoch")


def sec_pmd_cnn_train_epoch(ctx: Ctx, sec: Section) -> None:
    _epoch(ctx, sec, "pmd_cnn", "pmd_epoch")


# -- streaming ----------------------------------------------------------------------------------------
class _InProcessSource:
    """The same frame ``n`` times, as fast as the predictor takes them (a source iterator of Frame)."""

    def __init__(self, image: np.ndarray, n: int):
        self.image, self.n, self._closed = image, n, False

    def __iter__(self):
        from models.stream.protocol import Frame

        for i in range(self.n):
            if self._closed:
                return
            yield Frame(i, self.image, {}, time.perf_counter())

    def close(self) -> None:
        self._closed = True


def sec_stream_resnet(ctx: Ctx, sec: Section) -> None:
    from models.artifact import save_model
    from models.networks import build, count_parameters
    from models.stream.pipeline import StreamOptions, StreamPredictor

    sc = ctx.cfg
    spec = sc["resnet"]
    h, w = sc["stream_shape"]
    r = np.hypot(*np.meshgrid(np.arange(h) - (h - 1) / 2, np.arange(w) - (w - 1) / 2, indexing="ij"))
    frame = (1e6 * np.sinc(r / 6) ** 2 + 1).astype(np.float32)  # an Airy-like scattering intensity
    arch = {"name": spec["name"], "kwargs": {**spec["kwargs"], "outputs": 5}}
    net = build(arch["name"], **arch["kwargs"]).eval()
    folder = ctx.tmp / "stream-resnet"
    save_model(folder, net, {"architecture": arch, "labels": ["radius", "q0", "q1", "q2", "q3"], "task": "regress",
                             "preprocessing": {"name": "scatter", "input": "intensity", "log_floor": -6.0,
                                               "out_shape": [h, w]},
                             "input": {"shape": [h, w], "mean_std": [0.0, 1.0]}})
    B = sc["stream_batch"]
    workers = 0 if ctx.device.startswith("cuda") else 1  # one thread per process on a shared CPU
    sec.rec["setup"] = (f"{spec['label']} ({count_parameters(net):,} parameters, random weights), raw {h} x {w} "
                        f"intensity frames -> scatter preprocessing -> model on {ctx.device}; batch {B}, "
                        f"max latency 20 ms, workers {workers or 'auto'}; in-process source (no network)")
    with sec.measure("stream"):
        n = sc["stream_frames"]
        opts = StreamOptions(batch_size=B, max_latency_ms=20, queue_size=4 * B, max_frames=n, device=ctx.device,
                             workers=workers, duration_s=max(5.0, sec.left()))
        runner = StreamPredictor(str(folder), _InProcessSource(frame, n), [], opts)
        s = runner.run()
        sec.figure("frames_per_s", s["rate"], "frames/s", f"{s['predicted']} frames predicted of {n} "
                   f"(balanced={s.get('balanced')}), wall {s.get('wall_s', 0):.3g} s incl. the first batch")
        for q in ("p50_ms", "p99_ms"):
            if q in s and s[q] is not None:
                sec.figure(f"latency_{q}", s[q], "ms", "frame received -> prediction emitted")
        if s["predicted"] < n and not sec.over():
            raise RuntimeError(f"only {s['predicted']} of {n} frames predicted: {s}")


SECTION_FUNCS = {name: globals()[f"sec_{name}"] for name in SECTIONS}


# -- driver -------------------------------------------------------------------------------------------
def print_table(report: Report, stream) -> None:
    d = report.data
    info = d["info"]
    print(f"\nGPU check ({info.get('date')}, device {info.get('device')}"
          f"{', ' + str(info.get('gpu')) if info.get('gpu') else ''}, scale {info.get('scale')}, "
          f"CPU {info.get('cpu_model')}, load {info.get('load_avg_start')} -> {info.get('load_avg_end')})", file=stream)
    rows = [("section", "figure", "value", "unit", "note")]
    for name, sec in d["sections"].items():
        if sec["status"] == "skipped":
            rows.append((name, "-", "skipped", "", sec.get("reason", "")[:70]))
            continue
        for fname, f in sec["figures"].items():
            rows.append((name, fname, _fmt(f["value"]), f["unit"], "extrapolated" if f.get("extrapolated") else ""))
        for e in sec["errors"]:
            rows.append((name, e["measurement"], "ERROR", "", e["error"][:70]))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    for k, r in enumerate(rows):
        print("| " + " | ".join(c.ljust(widths[i]) for i, c in enumerate(r)) + " |", file=stream)
        if k == 0:
            print("| " + " | ".join("-" * widths[i] for i in range(5)) + " |", file=stream)
    stream.flush()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", choices=["auto", "cuda", "cpu"], default="auto")
    ap.add_argument("--scale", choices=["gpu", "tiny"], default=None,
                    help="gpu: the papers' sizes; tiny: the smallest (smoke run). Default: gpu on a GPU, else tiny")
    out_default = Path(os.environ["OUT"]) / "gpu_check.json" if os.environ.get("OUT") else Path("gpu_check.json")
    ap.add_argument("--out", type=Path, default=out_default, help=f"the JSON (default: {out_default})")
    ap.add_argument("--budget-s", type=float, default=420.0, help="time for all the sections together (s)")
    ap.add_argument("--json", action="store_true", help="print only the JSON on stdout (progress goes to stderr)")
    ap.add_argument("--threads", type=int, default=1, help="torch / FFT threads of this process")
    ap.add_argument("--tdse-backend", choices=["torch", "fftw", "numpy", "auto"], default="torch",
                    help="TDSE backend (torch: on --device; the others run on the CPU)")
    ap.add_argument("--only", default="", help="comma-separated sections to run (default: all)")
    ap.add_argument("--skip", default="", help="comma-separated sections to leave out")
    ap.add_argument("--record", action=argparse.BooleanOptionalAction, default=None,
                    help="write benchmarks/records/gpu_check.json ($OUT/records/ when $OUT is set); "
                         "default: at --scale gpu only")
    args = ap.parse_args(argv)
    t_start = time.perf_counter()

    import torch

    torch.set_num_threads(args.threads)
    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    elif device == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda but torch sees no CUDA GPU", file=sys.stderr)
        return 2
    scale = args.scale or ("gpu" if device == "cuda" else "tiny")
    names = [s for s in (args.only.split(",") if args.only else SECTIONS) if s]
    unknown = [s for s in names + [s for s in args.skip.split(",") if s] if s not in SECTIONS]
    if unknown:
        print(f"error: unknown section(s) {', '.join(unknown)}; known: {', '.join(SECTIONS)}", file=sys.stderr)
        return 2
    names = [s for s in names if s not in args.skip.split(",")]

    report = Report(args.out, quiet=args.json)
    report.data["info"] = machine_info(device, scale, args)
    report.data["sections_planned"] = names
    report.write()
    i = report.data["info"]
    report.say(f"gpu_check: device {device} ({i.get('gpu') or i['cpu_model']}), scale {scale}, budget {args.budget_s:.0f} s, "
               f"load {i['load_avg_start']}, torch {i['torch']} (CUDA {i['cuda']}), JSON -> {args.out}")
    ctx = Ctx(args, device, scale)
    try:
        failed = run_sections(report, ctx, names, t_start, t_start + args.budget_s)
    finally:
        shutil.rmtree(ctx.tmp, ignore_errors=True)
    report.data["finished"] = True
    report.data["wall_s"] = round(time.perf_counter() - t_start, 2)
    report.write()
    if args.json:
        print(json.dumps(report.data, indent=1, default=_jsonable))
    else:
        print_table(report, sys.stdout)
        print(f"\nwall {report.data['wall_s']:.1f} s; JSON: {args.out}", flush=True)
    if args.record if args.record is not None else scale == "gpu":
        write_record(report.data)
    return 1 if failed else 0


def write_record(data: dict[str, Any]) -> None:
    """gpu_check.json among the benchmark records: every figure as ``section.figure``, a row per section."""
    info = data["info"]
    figures: dict[str, Any] = {}
    rows = []
    for name, sec in data["sections"].items():
        for fname, f in sec.get("figures", {}).items():
            note = "; ".join(x for x in ("extrapolated" if f.get("extrapolated") else "", f.get("note") or "") if x)
            figures[f"{name}.{fname}"] = {"value": f["value"], "unit": f["unit"], **({"note": note} if note else {})}
        why = sec.get("reason") or "; ".join(e["error"] for e in sec.get("errors", [])) or "; ".join(sec.get("notes", []))
        rows.append([name, sec.get("status"), sec.get("seconds"), why[:300] or None])
    figures["wall"] = (data.get("wall_s", 0.0), "s")
    machine = records.machine_info()
    machine.update({k: info[k] for k in ("device", "scale", "cuda", "cudnn", "gpu_memory_gib", "torch_threads",
                                         "tdse_backend") if info.get(k) is not None})
    out = os.environ.get("OUT")
    records.record("gpu_check", title="GPU check", figures=figures, machine=machine,
                   table={"title": "Sections", "columns": ["section", "status", "seconds", "skipped / errors / notes"],
                          "rows": rows},
                   directory=Path(out) / "records" if out else None)


def run_sections(report: Report, ctx: Ctx, names: list[str], t_start: float, deadline: float) -> bool:
    """Run the sections in order, each with its share of the time left; True if any failed."""
    device = ctx.device
    failed = False
    for k, name in enumerate(names):
        now = time.perf_counter()
        weights = sum(SECTIONS[s] for s in names[k:])
        sec_deadline = now + max(0.0, deadline - now) * SECTIONS[name] / weights
        sec = Section(name, report, sec_deadline, device)
        report.data["sections"][name] = sec.rec
        report.say(f"[{name}] budget {sec.left():.0f} s, load {sec.rec['load_avg_start']}")
        if deadline - now <= 0:
            sec.rec.update(status="skipped", reason="the global --budget-s was spent before this section")
        else:
            with sec.measure("section"):
                SECTION_FUNCS[name](ctx, sec)
            if sec.rec["status"] == "running":
                sec.rec["status"] = "error" if sec.rec["errors"] else ("ok" if sec.rec["figures"] else "empty")
        failed |= sec.rec["status"] in ("error", "empty")
        sec.rec["seconds"] = round(time.perf_counter() - sec.t0, 2)
        report.say(f"[{name}] {sec.rec['status']} in {sec.rec['seconds']:.1f} s")
        report.data["info"]["load_avg_end"] = _load()
        report.data["wall_s"] = round(time.perf_counter() - t_start, 2)
        report.write()
    return failed


if __name__ == "__main__":
    sys.exit(main())
