"""How a streaming predictor batches, queues, predicts and when it stops: :class:`StreamOptions`."""

from __future__ import annotations

from dataclasses import dataclass

from .frame_model import OPTIMIZE

POLICIES = ("wait", "drop")


@dataclass
class StreamOptions:
    """How a ``StreamPredictor`` batches, queues, predicts and when it stops.

    Parameters
    ----------
    batch_size : int, optional
        Frames per model call (>= 1).
    max_latency_ms : float, optional
        A batch waits at most this long, ms, after its first frame arrived for more frames.
    queue_size : int, optional
        Frames held between the reader and the model (>= 1).
    policy : {"wait", "drop"}, optional
        A full queue stops the reader (back-pressure, nothing dropped), or drops the oldest
        queued frame (counted, its id recorded).
    replicas : int, optional
        0: predict on threads of this process; N: on N model replicas kept by the executor
        (Ray actors by default, one GPU each when there is one per replica).
    workers : int, optional
        In-process batches at once; 0: auto (the CPU cores up to 4 on a CPU, 2 on a GPU).
    device : str, optional
        Torch device of the in-process model; default the GPU when there is one.
    optimize : {"freeze", "none", "compile"}, optional
        Frozen TorchScript, the eager module, or ``torch.compile``.
    status_every_s : float, optional
        Seconds between status callbacks.
    max_frames : int, optional
        Stop after this many received messages.
    duration_s : float, optional
        Stop after this many seconds.
    idle_timeout_s : float, optional
        Stop when nothing arrived for this many seconds.
    geometry : str, optional
        Detector frames: a CrystFEL ``.geom`` file (else the detector's default geometry).
    bin : int, optional
        Detector frames: detector pixels per model pixel (None: the largest that fits).
    mc_samples : int, optional
        MC-dropout passes per frame (adds ``<label>_std`` and, with a calibration,
        ``ood_score`` and ``flagged``); 0: off.

    Raises
    ------
    ValueError
        An unknown ``policy`` or ``optimize``, or a size, latency or count out of range.
    """

    batch_size: int = 32
    max_latency_ms: float = 20.0      # a batch waits at most this long for more frames
    queue_size: int = 256
    policy: str = "wait"
    replicas: int = 0                 # 0: predict on threads of this process; N: N model replicas (Ray actors)
    workers: int = 0                  # in-process batches at once (0: auto = CPU cores up to 4 on CPU, 2 on GPU)
    device: str | None = None
    optimize: str = "freeze"          # none | freeze (TorchScript) | compile (torch.compile)
    status_every_s: float = 1.0
    max_frames: int | None = None     # stop after this many received messages
    duration_s: float | None = None
    idle_timeout_s: float | None = None  # stop when nothing arrived for this long
    geometry: str | None = None       # detector frames: a CrystFEL .geom file (else the detector's default)
    bin: int | None = None            # detector frames: pixels per model pixel (None: the largest that fits)
    mc_samples: int = 0               # uncertainty: MC-dropout passes per frame (<label>_std, ood_score, flagged); 0 off

    def __post_init__(self):
        if self.policy not in POLICIES:
            raise ValueError(f"policy {self.policy!r}: choose wait or drop")
        if self.optimize not in OPTIMIZE:
            raise ValueError(f"optimize {self.optimize!r}: choose one of {', '.join(OPTIMIZE)}")
        if self.batch_size < 1 or self.queue_size < 1 or self.max_latency_ms < 0 or self.replicas < 0 or self.workers < 0:
            raise ValueError("batch_size and queue_size must be >= 1, max_latency_ms, replicas and workers >= 0")
        if self.bin is not None and self.bin < 1:
            raise ValueError(f"bin {self.bin}: must be >= 1")
