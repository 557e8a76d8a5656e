"""``factory predict stream``: a trained model on a live (or replayed) detector stream."""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from factory.app.common import emit_json, fail, user_errors

app = typer.Typer(help="Run trained models on detector frames.", no_args_is_help=True)


def _status_line(st: dict) -> None:
    sys.stderr.write(
        f"\r{st['received']} received | {st['predicted']} predicted | {st['rejected']} rejected | "
        f"{st['dropped']} dropped | {st['pending']} pending | {st['rate']:.0f} frames/s | "
        f"latency p50 {st['p50_ms']:.1f} ms p99 {st['p99_ms']:.1f} ms   "
    )
    sys.stderr.flush()


@app.command()
@user_errors
def stream(
    model: Annotated[Path, typer.Argument(help="a trained model folder (model.json + weights.safetensors)")],
    source: Annotated[str, typer.Option(help="tcp://host:port (ZeroMQ), or a dataset store / image folder to replay")],
    out: Annotated[Optional[Path], typer.Option(help="Zarr store for the predictions (frame_id, latency, labels)")] = None,
    pub: Annotated[Optional[str], typer.Option(help="also publish predictions on this ZeroMQ endpoint (bound; e.g. tcp://127.0.0.1:5600)")] = None,
    pub_protocol: Annotated[str, typer.Option(help="--pub as msgpack (PUB, one message per frame, schema factory.predictions/1) or karabo (a karabo-bridge server: one message per train, read by karabo_bridge.Client)")] = "msgpack",
    pub_pattern: Annotated[Optional[str], typer.Option(help="--pub socket: PUB for msgpack; REP (default: karabo_bridge.Client asks 'next'), PUB or PUSH for karabo")] = None,
    protocol: Annotated[str, typer.Option(help="karabo (European XFEL karabo-bridge 2.2) or simple (\\[header, buffer]: a msgpack or JSON header, then the raw array)")] = "karabo",
    pattern: Annotated[str, typer.Option(help="ZeroMQ pattern: REQ (ask 'next'), PULL or SUB")] = "REQ",
    karabo_source: Annotated[Optional[str], typer.Option(help="karabo-bridge source name (default: first with an array)")] = None,
    karabo_key: Annotated[Optional[str], typer.Option(help="array path, e.g. image.data (default: image.data, data.adc, ... else the first array that is not metadata such as trainId/pulseId/cellId, gain or mask)")] = None,
    detector: Annotated[str, typer.Option(help="karabo trains of a facility detector: agipd, lpd, dssc, jungfrau, epix100; auto: the one the source's name names; none: arrays are (H, W) or (pulses, H, W)")] = "auto",
    layout: Annotated[str, typer.Option(help="the detector's data layout: online (bridge: (modules,) fs, ss, cells for AGIPD/LPD/DSSC), file (cells, (modules,) ss, fs) or auto (from the shape); modules only for multi-module detectors")] = "auto",
    geometry: Annotated[Optional[Path], typer.Option(help="CrystFEL .geom file to assemble the detector's modules (default: the detector's documented default geometry); needs --detector")] = None,
    binning: Annotated[Optional[int], typer.Option("--bin", min=1, help="detector pixels per model pixel when cutting the assembled image to the model's frame (default: the largest that fits)")] = None,
    timeout: Annotated[float, typer.Option(min=0.01, help="REQ: ask again when a reply has not come after this many seconds on a live connection")] = 10.0,
    rate: Annotated[Optional[float], typer.Option(min=0.001, help="replay rate in frames/s (default: as fast as possible)")] = None,
    batch: Annotated[int, typer.Option(min=1, help="largest batch")] = 32,
    max_latency_ms: Annotated[float, typer.Option(min=0, help="longest a frame waits for its batch to fill")] = 20.0,
    queue: Annotated[int, typer.Option(min=1, help="bounded queue length")] = 256,
    policy: Annotated[str, typer.Option(help="full queue: wait (slow the source, drop nothing) or drop (oldest; ids recorded)")] = "wait",
    replicas: Annotated[int, typer.Option(min=0, help="model replicas as Ray actors (0: in this process)")] = 0,
    workers: Annotated[int, typer.Option(min=0, help="in-process batches at once, each preprocessed and run by its own thread (0: auto: CPU cores up to 4, one torch thread each; 2 on a GPU)")] = 0,
    device: Annotated[Optional[str], typer.Option(help="cpu or cuda (default: cuda when present)")] = None,
    optimize: Annotated[str, typer.Option(help="none, freeze (TorchScript, default) or compile (torch.compile: ~1 min start, fastest)")] = "freeze",
    max_frames: Annotated[Optional[int], typer.Option(min=1, help="stop after this many messages")] = None,
    duration: Annotated[Optional[float], typer.Option(min=0.1, help="stop after this many seconds")] = None,
    idle_timeout: Annotated[Optional[float], typer.Option(min=0.1, help="stop after this long without messages")] = None,
    max_mb: Annotated[float, typer.Option(min=0.001, help="largest accepted frame, MiB (checked before allocating)")] = 64.0,
    png: Annotated[Optional[Path], typer.Option(help="write a PNG of recent predictions every --png-every seconds")] = None,
    png_every: Annotated[float, typer.Option(min=0.1, help="seconds between two writes of the --png figure")] = 10.0,
    overwrite: Annotated[bool, typer.Option(help="replace an existing --out store")] = False,
    monitor: Annotated[Optional[int], typer.Option(min=0, max=65535, help="serve a live monitor page (rates, latency, histograms of the predictions, the latest frame) on this port (0: a free one); the URL is printed")] = None,
    monitor_host: Annotated[str, typer.Option(help="address the --monitor page binds (default loopback; another address exposes it to that network)")] = "127.0.0.1",
    uncertainty: Annotated[Optional[bool], typer.Option("--uncertainty/--no-uncertainty", help="stream <label>_std (MC-dropout spread, calibrated), ood_score and flagged beside each prediction (default: on when the model has a calibration.json from factory calibrate)")] = None,
    mc_samples: Annotated[Optional[int], typer.Option(min=2, help="MC-dropout passes per frame with --uncertainty (default: the calibration's)")] = None,
    max_reject: Annotated[float, typer.Option(min=0.0, max=1.0, help="exit non-zero when more than this fraction of the received frames was rejected (a run with none predicted always does)")] = 0.5,
    as_json: Annotated[bool, typer.Option("--json", help="print the final summary as JSON")] = False,
):
    """Predict on a detector stream; Ctrl-C drains and flushes. Prints received = predicted + rejected + dropped.

    Exits non-zero with one error line when the source was lost, nothing was received, numbered
    messages were lost, or more than --max-reject of the frames were rejected."""
    from factory.outputs import check_disjoint, check_replaceable, is_predictions_store, user_path

    from models.stream.pipeline import StreamOptions, StreamPredictor, verdict
    from models.stream.sinks import PngSink, ZarrSink, check_png, open_pub
    from models.stream.sources import open_source

    # everything is checked before anything is written (and before torch is imported)
    model = user_path(model)
    inputs = [model] if "://" in source else [model, source]
    for path in (out, png):
        if path is not None:
            check_disjoint(path, inputs)
    if out:
        check_replaceable(user_path(out), overwrite=overwrite, what="predictions store", recognise=is_predictions_store)
    if png:
        check_png(png, overwrite)
    if geometry is not None and detector in ("auto", "none"):
        fail("--geometry needs --detector (agipd, lpd, dssc, jungfrau or epix100)")
    from models.card import ModelCard

    desc = ModelCard.read(model).to_dict()  # a damaged card fails here, in one line (torch not yet imported)
    labels = list(desc["labels"]) if desc.get("task") != "classify" else ["class"]
    mc = _uncertainty(model, uncertainty, mc_samples)
    if mc:
        from models.uncertainty import stream_fields

        labels = labels + stream_fields(labels)
    if geometry is not None or detector not in ("auto", "none"):
        _check_detector(detector, geometry, desc)
    sinks = []
    try:
        opts = StreamOptions(batch_size=batch, max_latency_ms=max_latency_ms, queue_size=queue, policy=policy,
                             replicas=replicas, workers=workers, device=device, optimize=optimize, max_frames=max_frames, duration_s=duration,
                             idle_timeout_s=idle_timeout, geometry=str(user_path(geometry)) if geometry else None, bin=binning,
                             mc_samples=mc)
        src = open_source(source, pattern=pattern, protocol=protocol, max_bytes=int(max_mb * 2**20), timeout_s=timeout,
                          karabo_source=karabo_source, karabo_key=karabo_key, detector=detector, layout=layout, rate=rate)
        if pub:
            sinks.append(open_pub(pub, pub_protocol, labels, pub_pattern))
        if monitor is not None:
            sinks.append(_monitor(model, desc, labels, monitor_host, monitor))
    except ValueError as exc:
        _close(sinks)
        fail(str(exc))
    runner = StreamPredictor(str(model), src, [], opts, on_status=None if as_json else _status_line)
    if png:
        sinks.append(PngSink(png, labels, every_s=png_every, overwrite=overwrite))
    if out:  # the only thing written to disk before the stream starts
        sinks.insert(0, ZarrSink(out, labels, {"model": str(model), "source": source, "labels": labels},
                                 overwrite=overwrite))
    runner.sinks = sinks
    previous = signal.signal(signal.SIGINT, lambda *_: runner.stop())
    try:
        summary = runner.run()  # flushes every sink and writes the summary, whatever happens
    finally:
        signal.signal(signal.SIGINT, previous)
        _close(sinks)
    if as_json:
        emit_json(summary)
    else:
        sys.stderr.write("\n")
        lost = f" (+ lost {summary['lost']}: sent {summary['sent']})" if summary["lost"] else ""
        timeouts = f", reply timeouts {summary['timeouts']}" if summary.get("timeouts") else ""
        typer.echo(
            f"received {summary['received']}{lost} = predicted {summary['predicted']} + rejected {summary['rejected']} "
            f"+ dropped {summary['dropped']}; {summary['rate']:.0f} frames/s; latency p50 {summary['p50_ms']:.1f} ms, "
            f"p99 {summary['p99_ms']:.1f} ms; reconnects {summary['reconnects']}{timeouts}"
        )
        if summary["reasons"]:
            typer.echo("rejected: " + "; ".join(f"{k} x{v}" for k, v in summary["reasons"].items()))
    if runner.reader_error is not None:  # not a user error: keep the traceback
        raise RuntimeError(f"{summary['error']} (the predictions made so far were written)") from runner.reader_error
    if summary["received"] != summary["predicted"] + summary["rejected"] + summary["dropped"]:
        fail("counts do not balance (a bug): received != predicted + rejected + dropped", code=3)
    reason = verdict(summary, max_reject)
    if reason:
        fail(reason, code=1)


def _check_detector(detector: str, geometry: Optional[Path], desc: dict) -> None:
    """--detector NAME / --geometry FILE checked before the stream starts (one error line)."""
    from factory.outputs import user_path
    from factory.processing.description import model_frame_shape

    from models.stream.detectors import CHOICES, DETECTORS, load_geometry

    if detector not in CHOICES:
        fail(f"--detector {detector!r}: choose one of {', '.join(CHOICES)}")
    if model_frame_shape(desc.get("preprocessing"), desc["input"]["shape"]) is None:
        fail(f"--detector {detector}: the model takes no 2D frame")
    if geometry is not None:
        try:
            load_geometry(DETECTORS[detector], user_path(geometry))
        except ValueError as exc:
            fail(str(exc))


def _monitor(model: Path, desc: dict, labels: list[str], host: str, port: int):
    """The --monitor page, serving before the model is loaded; its URL on stderr."""
    from factory.plots.style import KNOWN_UNITS

    from models.stream.monitor import MonitorSink, frame_scale
    from models.stream.sinks import _label_units

    units = {n: KNOWN_UNITS.get(n) for n in labels}
    units.update(_label_units({"model": str(model)}, labels))
    sink = MonitorSink(labels, units, host=host, port=port, log_floor=frame_scale(desc.get("preprocessing")),
                       title=f"factory predict stream: {model.name}")
    url = sink.start()
    sys.stderr.write(f"monitor: {url}\n")
    sys.stderr.flush()
    return sink


def _uncertainty(model: Path, wanted: Optional[bool], mc_samples: Optional[int]) -> int:
    """MC-dropout passes per frame for the stream (0: no uncertainty): on when asked, or by default
    when the model has a calibration; --uncertainty without one is one error line."""
    from models.uncertainty import FILENAME, Calibration

    if wanted is False:
        return 0
    if not (model / FILENAME).exists():
        if wanted:
            fail(f"--uncertainty: {model} has no {FILENAME}; run factory calibrate {model} STORE first")
        return 0
    return mc_samples or Calibration.read(model).mc_samples  # a damaged calibration: one line


def _close(sinks: list) -> None:
    for s in sinks:
        if hasattr(s, "close"):
            s.close()
