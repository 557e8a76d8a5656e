"""The streaming predictor: source -> bounded queue -> batches -> model (replicas) -> sinks.

Counting rule, true at every moment and printed at the end:
``received = predicted + rejected + dropped + pending`` (pending = queued or being predicted;
0 once the stream has drained).  Where the sender numbers its messages (``seq``), ``lost``
counts those that never arrived and ``sent = received + lost``; the run is ``balanced`` when
``sent = predicted + rejected + dropped`` and the reader did not stop on an error (``error``).
Whatever ends the run (the source, a limit, stop(), an exception), the sinks are flushed and
the summary written to them.  Policy ``wait`` never drops: a full queue stops the reader,
which stops asking (REQ) or lets ZeroMQ's high-water mark push back on the sender (PULL).
Policy ``drop`` keeps up by dropping the oldest queued frame and records its id.

Every frame is predicted or rejected with a reason: sinks that take ``write_results`` get both
(:class:`Results`: frame ids, train and pulse ids, latency, values, and the rejected frames with
their reasons); the others get the predictions (``write(frame_ids, latency_ms, values)``).
:func:`verdict` says whether a run failed: its source lost, more than ``max_reject`` of the
frames rejected (any run with frames but no prediction), messages lost or nothing received.

Results are emitted in arrival order (frame ids in the order the source sent them) even when
batches finish out of order.  Batches run on a thread pool sharing one model in this process, or
(``replicas``) on model replicas that the executor keeps (Ray actors by default, one GPU each when
there is one for every replica; see :mod:`factory.compute.replicas`): either way a batch is a
``concurrent.futures.Future``.
"""

from __future__ import annotations

import collections
import functools
import os
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from .accounting import Counts, Results, _ids, _Queue, verdict
from .frame_model import OPTIMIZE, FrameModel, optimized
from .options import POLICIES, StreamOptions
from .protocol import Frame, Rejected

if TYPE_CHECKING:
    from factory.compute import Executor, ReplicaPool


class StreamPredictor:
    """Predict labels for a stream of frames: source -> bounded queue -> batches -> model -> sinks.

    See the module docstring for the counting rule and the order of the results.

    Parameters
    ----------
    model_folder : str
        A trained model folder; raw frames go through the preprocessing its card records.
    source : iterable
        Yields ``Frame`` (a decoded frame),
        ``Rejected`` (a malformed message, counted) or None
        (nothing arrived yet); e.g. ``models.stream.sources.open_source``.  Its
        ``close()``, ``reconnects``, ``timeouts`` and ``lost`` are used when present.
    sinks : list
        Where results go: each has ``write(frame_ids, latency_ms, values)`` or
        ``write_results(results)`` and ``flush(summary)`` (e.g. the Zarr, PUB and PNG sinks
        of ``models.stream.sinks``).
    options : StreamOptions
        Batching, queueing, placement and stop conditions.
    on_status : callable, optional
        Called every ``options.status_every_s`` with the live counts (received, predicted,
        rejected, dropped, pending, lost, latency percentiles, rate).
    executor : Executor, optional
        Keeps the model replicas when ``options.replicas`` > 0; default Ray.

    Raises
    ------
    ModelError
        The model is missing or damaged.
    """

    def __init__(self, model_folder: str, source, sinks: list, options: StreamOptions,
                 on_status: Callable[[dict[str, Any]], None] | None = None, executor: Executor | None = None):
        import torch

        self.source, self.sinks, self.opt = source, sinks, options
        self.counts = Counts()
        self.lock = threading.Lock()
        self.queue = _Queue(options.queue_size, options.policy, self.counts, self.lock)
        self.stop_event = threading.Event()
        self.source_done = threading.Event()
        self.reader_error: BaseException | None = None  # why the reader thread stopped early
        self.on_status = on_status
        self.latencies: collections.deque[float] = collections.deque(maxlen=100_000)
        self.model_folder = str(model_folder)
        self.detectors_seen: set[tuple[str, bool]] = set()  # (detector, assembled) of the frames read
        self._torch_threads = torch.get_num_threads()  # restored after each run
        if options.replicas:  # on Ray (RAY_ADDRESS, else an embedded local Ray) unless given an executor
            from factory.compute import resolve_executor
            from models.artifact import load_network

            _, card = load_network(self.model_folder)  # a damaged model fails here, in one line
            self.executor = resolve_executor(executor or "ray")
            self.labels = list(card.labels) if card.task != "classify" else ["class"]
            if options.mc_samples:
                from models.uncertainty import FILENAME, stream_fields

                calibrated = (Path(self.model_folder) / FILENAME).exists()
                self.labels = self.labels + stream_fields(self.labels)[: None if calibrated else -2]
        else:
            self.model = FrameModel(self.model_folder, options.device, optimize=options.optimize,
                                    geometry=options.geometry, bin=options.bin, mc_samples=options.mc_samples)
            self.labels = self.model.labels
            on_gpu = str(self.model.predictor.device).startswith("cuda")
            self.workers = options.workers or (2 if on_gpu else max(1, min(4, os.cpu_count() or 1)))
            # CPU: each worker thread preprocesses and runs its own batch on one core (the network
            # scales worse over cores than batches do); GPU: preprocessing overlaps the GPU's work
            self._cpu_threads = 1 if (self.workers > 1 and not on_gpu) else None

    # -- threads ----------------------------------------------------------------------
    def stop(self) -> None:
        self.stop_event.set()
        close = getattr(self.source, "close", None)
        if close:
            close()

    def _receive(self) -> None:
        last = time.perf_counter()
        try:
            for item in self.source:
                now = time.perf_counter()
                if self.stop_event.is_set():
                    break
                if item is None:
                    if self.opt.idle_timeout_s and now - last > self.opt.idle_timeout_s:
                        break
                    continue
                last = now
                with self.lock:
                    self.counts.received += 1
                    self.counts.seq.see(item.seq)
                    if isinstance(item, Rejected):
                        self.counts.reject(item.reason)
                if not isinstance(item, Rejected):
                    det = item.meta.get("detector")
                    if det is not None and (det, item.image.ndim == 3) not in self.detectors_seen:
                        self.detectors_seen.add((det, item.image.ndim == 3))
                    self.queue.put(item, self.stop_event)
                if self.opt.max_frames and self.counts.received >= self.opt.max_frames:
                    break
        except BaseException as exc:  # reported in the summary; the run ends and says why
            self.reader_error = exc
        finally:
            self.source_done.set()

    def _emit(self, frames: list[Frame], ok: np.ndarray, values: dict[str, np.ndarray], reasons: list[str]) -> None:
        now = time.perf_counter()
        good = [f for f, k in zip(frames, ok) if k]
        bad = [f for f, k in zip(frames, ok) if not k]
        ids, trains, pulses, sizes, cells = _ids(good)
        lat = np.array([(now - f.t_received) * 1e3 for f in good])
        why = list(reasons) + ["rejected by the model without a reason"] * max(0, len(bad) - len(reasons))
        res = Results(ids, trains, pulses, lat, values, sizes, cells, [
            (f.frame_id, -1 if f.train_id is None else f.train_id, -1 if f.pulse_id is None else f.pulse_id,
             f.train_size, r) for f, r in zip(bad, why)], np.asarray(ok, bool))
        for s in self.sinks:
            if hasattr(s, "write_results"):
                s.write_results(res)
            elif len(good):
                s.write(ids, lat, values)
            if good and hasattr(s, "write_latest"):  # the live monitor: the frame by reference, drawn on request
                s.write_latest(good[-1].frame_id, good[-1].image, {n: v[-1] for n, v in values.items()})
        with self.lock:
            self.counts.predicted += len(good)
            for r in reasons:
                self.counts.reject(r)
            if len(frames) - len(good) > len(reasons):
                self.counts.reject("rejected by the model without a reason", len(frames) - len(good) - len(reasons))
        self.latencies.extend(lat.tolist())

    def status(self) -> dict[str, Any]:
        with self.lock:
            c = self.counts
            lat = np.asarray(self.latencies) if self.latencies else np.zeros(1)
            return {"received": c.received, "predicted": c.predicted, "rejected": c.rejected, "dropped": c.dropped,
                    "pending": c.pending(), "lost": c.seq.lost, "p50_ms": float(np.percentile(lat, 50)),
                    "p99_ms": float(np.percentile(lat, 99))}

    def run(self) -> dict[str, Any]:
        """Stream until the source ends, a limit is reached or stop() is called; then drain.

        Whatever ends the run, every sink is flushed with the summary.

        Returns
        -------
        dict
            The summary: ``received``, ``predicted``, ``rejected``, ``dropped``, ``pending``,
            ``lost``, ``sent``, ``balanced``, ``p50_ms`` and ``p99_ms`` latency, ``rate``
            (frames/s), ``wall_s``, ``reasons`` of the rejections, ``dropped_ids``, the
            source's ``reconnects``, ``timeouts`` and ``source_lost``, ``detectors``, the
            reader's ``error`` and the sinks' ``report``s (``sinks``).
            ``verdict`` says whether the run failed.
        """
        import torch

        pool: ThreadPoolExecutor | ReplicaPool | None = None
        try:
            if self.opt.replicas:  # one torch thread per replica on a CPU, one GPU each where there are enough
                pool = self.executor.replicas(FrameModel, (self.model_folder, self.opt.device, 1, self.opt.optimize,
                                                           self.opt.geometry, self.opt.bin, self.opt.mc_samples),
                                                 self.opt.replicas)
                submit, in_flight = functools.partial(pool.submit, "run"), 2 * len(pool)
            else:
                if self._cpu_threads:
                    torch.set_num_threads(self._cpu_threads)
                pool = ThreadPoolExecutor(self.workers, thread_name_prefix="stream-model")
                submit, in_flight = functools.partial(pool.submit, self.model.run), self.workers
            return self._run(submit, in_flight)
        finally:
            if isinstance(pool, ThreadPoolExecutor):
                pool.shutdown(wait=True)
            elif pool is not None:
                pool.close()
            torch.set_num_threads(self._torch_threads)

    @staticmethod
    def _collect(pending: dict[int, tuple[list[Frame], Future]], done_results: dict[int, tuple],
                 timeout: float) -> None:
        """Move finished batches from ``pending`` to ``done_results``, waiting at most ``timeout``
        seconds for the first one to finish."""
        owner = {fut: s for s, (_, fut) in pending.items()}
        ready, _ = wait_futures(list(owner), timeout=timeout, return_when="FIRST_COMPLETED")
        error = None
        for fut in ready:  # keep every finished batch, even when another one failed
            try:
                res = fut.result()
            except Exception as exc:
                error = error or exc
                continue
            frames, _ = pending.pop(owner[fut])
            done_results[owner[fut]] = (frames, *res)
        if error is not None:
            raise error

    def _run(self, submit: Callable[..., Future], in_flight: int) -> dict[str, Any]:
        reader = threading.Thread(target=self._receive, name="stream-reader", daemon=True)
        for s in self.sinks:  # sinks that show the counters live (the monitor) read them from status()
            if hasattr(s, "attach"):
                s.attach(self.status)
        t0 = time.perf_counter()
        reader.start()
        ended = False
        try:
            self._loop(submit, in_flight, t0)
            ended = True
        finally:  # on every exit path: stop reading, then write what was predicted and the summary
            self.stop()
            reader.join(timeout=5)
            summary = self._summary(time.perf_counter() - t0)
            failures = []
            for s in self.sinks:
                try:
                    s.flush(summary)
                    if ended and not failures and hasattr(s, "publish"):
                        s.publish()  # an --overwrite's new store replaces the old one only now
                    elif hasattr(s, "discard"):
                        s.discard()
                except Exception as exc:  # the other sinks still get theirs
                    failures.append(exc)
            reports = {type(s).__name__: s.report() for s in self.sinks if hasattr(s, "report")}
            if reports:
                summary["sinks"] = reports
            if failures:
                raise failures[0]
        return summary

    def _summary(self, wall: float) -> dict[str, Any]:
        st = self.status()
        err = self.reader_error
        sent = st["received"] + st["lost"]
        return {**st, "sent": sent, "wall_s": wall, "rate": st["predicted"] / wall if wall > 0 else 0.0,
                "dropped_ids": list(self.counts.dropped_ids), "reasons": dict(self.counts.reasons),
                "reconnects": getattr(self.source, "reconnects", 0),
                "timeouts": getattr(self.source, "timeouts", 0),
                "source_lost": getattr(self.source, "lost", None),
                "detectors": self._detectors(),
                "error": None if err is None else f"the stream reader stopped: {type(err).__name__}: {err}",
                "balanced": err is None and sent == st["predicted"] + st["rejected"] + st["dropped"]}

    def _detectors(self) -> dict[str, Any]:
        """How the frames of each detector seen were made (recorded in the summary)."""
        if not self.detectors_seen:
            return {}
        from factory.processing.description import model_frame_shape
        from models.artifact import read_description

        from .detectors import DetectorFrames

        desc = read_description(self.model_folder)
        shape = model_frame_shape(desc.get("preprocessing"), desc["input"]["shape"])
        if shape is None:
            return {d: {"error": "the model takes no 2D frame"} for d, _ in self.detectors_seen}
        frames = DetectorFrames(shape, self.opt.geometry, self.opt.bin)
        return {f"{d}/{'assembled' if a else 'module'}": frames.describe(d, a) for d, a in sorted(self.detectors_seen)}

    def _loop(self, submit: Callable[..., Future], in_flight: int, t0: float) -> None:
        last_status = t0
        pending: dict[int, tuple[list[Frame], Future]] = {}
        next_emit, next_seq = 0, 0
        done_results: dict[int, tuple] = {}
        max_wait = self.opt.max_latency_ms / 1e3
        try:
            while True:
                if self.opt.duration_s and time.perf_counter() - t0 > self.opt.duration_s:
                    self.stop()
                finished_reading = self.source_done.is_set()
                batch = self.queue.get_batch(self.opt.batch_size, max_wait) if len(pending) < in_flight else []
                if batch:
                    dets = [f.meta.get("detector") for f in batch]
                    images = [f.image for f in batch]
                    pending[next_seq] = (batch, submit(images, dets) if any(dets) else submit(images))
                    next_seq += 1
                if pending:  # with every slot busy nothing but a finished batch can be acted on: wait for
                    # one (up to the next status line or 0.1 s) rather than polling; waking returns at once
                    if len(pending) >= in_flight:
                        wake = last_status + self.opt.status_every_s - time.perf_counter() if self.on_status else 0.1
                        timeout = min(0.1, max(0.0, wake))
                    else:
                        timeout = 0.0 if batch else 0.01
                    self._collect(pending, done_results, timeout)
                while next_emit in done_results:
                    self._emit(*done_results.pop(next_emit))
                    next_emit += 1
                now = time.perf_counter()
                if self.on_status and now - last_status >= self.opt.status_every_s:
                    st = self.status()
                    st["rate"] = st["predicted"] / (now - t0)
                    self.on_status(st)
                    last_status = now
                if finished_reading and not len(self.queue) and not pending and not done_results:
                    break
        except BaseException:
            for k in sorted(done_results):  # predictions made but not yet written: keep them
                self._emit(*done_results.pop(k))
            raise


__all__ = ["OPTIMIZE", "POLICIES", "Counts", "FrameModel", "Results", "StreamOptions", "StreamPredictor", "optimized",
           "verdict"]
