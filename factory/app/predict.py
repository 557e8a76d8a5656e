"""``factory predict stream``: a trained model on a live (or replayed) detector stream."""

from __future__ import annotations

import collections
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
    pub: Annotated[Optional[str], typer.Option(help="also publish predictions on this ZeroMQ PUB endpoint (e.g. tcp://127.0.0.1:5600)")] = None,
    protocol: Annotated[str, typer.Option(help="karabo (European XFEL karabo-bridge 2.2) or simple (\\[header, buffer]: a msgpack or JSON header, then the raw array)")] = "karabo",
    pattern: Annotated[str, typer.Option(help="ZeroMQ pattern: REQ (ask 'next'), PULL or SUB")] = "REQ",
    karabo_source: Annotated[Optional[str], typer.Option(help="karabo-bridge source name (default: first with an array)")] = None,
    karabo_key: Annotated[Optional[str], typer.Option(help="array path, e.g. image.data (default: the first array)")] = None,
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
    as_json: Annotated[bool, typer.Option("--json", help="print the final summary as JSON")] = False,
):
    """Predict on a detector stream; Ctrl-C drains and flushes. Prints received = predicted + rejected + dropped."""
    from factory.outputs import check_disjoint, check_replaceable, is_factory_zarr, user_path

    from models.stream.pipeline import StreamOptions, StreamPredictor
    from models.stream.sinks import PngSink, PubSink, ZarrSink, check_png
    from models.stream.sources import open_source

    # everything is checked before anything is written (and before torch is imported)
    model = user_path(model)
    inputs = [model] if "://" in source else [model, source]
    for path in (out, png):
        if path is not None:
            check_disjoint(path, inputs)
    if out:
        check_replaceable(user_path(out), overwrite=overwrite, what="predictions store", recognise=is_factory_zarr)
    if png:
        check_png(png, overwrite)
    sinks = []
    try:
        opts = StreamOptions(batch_size=batch, max_latency_ms=max_latency_ms, queue_size=queue, policy=policy,
                             replicas=replicas, workers=workers, device=device, optimize=optimize, max_frames=max_frames, duration_s=duration,
                             idle_timeout_s=idle_timeout)
        src = open_source(source, pattern=pattern, protocol=protocol, max_bytes=int(max_mb * 2**20),
                          karabo_source=karabo_source, karabo_key=karabo_key, rate=rate)
        if pub:
            sinks.append(PubSink(pub))
    except ValueError as exc:
        _close(sinks)
        fail(str(exc))
    from models.artifact import read_description

    desc = read_description(model)
    labels = list(desc["labels"]) if desc.get("task") != "classify" else ["class"]
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
        typer.echo(
            f"received {summary['received']}{lost} = predicted {summary['predicted']} + rejected {summary['rejected']} "
            f"+ dropped {summary['dropped']}; {summary['rate']:.0f} frames/s; latency p50 {summary['p50_ms']:.1f} ms, "
            f"p99 {summary['p99_ms']:.1f} ms; reconnects {summary['reconnects']}"
        )
        if summary["reasons"]:
            typer.echo("rejected: " + "; ".join(f"{k} x{v}" for k, v in summary["reasons"].items()))
    if runner.reader_error is not None:  # not a user error: keep the traceback
        raise RuntimeError(f"{summary['error']} (the predictions made so far were written)") from runner.reader_error
    if summary["received"] != summary["predicted"] + summary["rejected"] + summary["dropped"]:
        fail("counts do not balance (a bug): received != predicted + rejected + dropped", code=3)
    if summary["lost"]:
        fail(f"{summary['lost']} of the {summary['sent']} messages the sender numbered never arrived "
             f"(reconnects {summary['reconnects']})", code=1)
    if summary["received"] and not summary["predicted"]:
        top = ", ".join(f"{k} x{v}" for k, v in collections.Counter(summary["reasons"]).most_common(3))
        fail(f"no frame was predicted: {summary['rejected']} of {summary['received']} rejected ({top}), "
             f"{summary['dropped']} dropped", code=1)


def _close(sinks: list) -> None:
    for s in sinks:
        if hasattr(s, "close"):
            s.close()
