"""The model a stream runs: raw frames -> labels (:class:`FrameModel`), prepared for inference.

:class:`FrameModel` applies the training preprocessing the model card records (or the measured
detector model the network was trained through, or a facility detector's assembly) and then
the network, which :func:`optimized` prepares (``OPTIMIZE``: frozen TorchScript, eager or
``torch.compile``).  It is what the in-process threads and every model replica run.
"""

from __future__ import annotations

import numpy as np

OPTIMIZE = ("none", "freeze", "compile")


def optimized(model, input_shape: list[int], how: str, device):
    """The network prepared for inference.

    ``freeze``: traced, frozen and optimised TorchScript (batch norm folded into the
    convolutions, oneDNN kernels on CPU; under a second to prepare); ``compile``:
    torch.compile (inductor; about a minute to compile on 2 cores, fastest afterwards);
    ``none``: the eager module.
    """
    import warnings

    import torch

    if how not in OPTIMIZE:
        raise ValueError(f"optimize {how!r}: choose one of {', '.join(OPTIMIZE)}")
    if how == "none":
        return model
    if how == "compile":
        return torch.compile(model)
    example = torch.zeros((2, *input_shape), device=device)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        return torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.trace(model, example)))


class FrameModel:
    """Raw frames -> labels: the training preprocessing from the artefact, then the network.
    A model trained through a measured detector model (``factory process augment --detector``)
    takes its frames through that model instead (:func:`models.experimental.detector_frame`, the
    path of ``factory fig5``).  A detector's frames (``detectors[j]`` named) are first assembled and cut to the model's raw
    frame (:class:`.detectors.DetectorFrames`, with ``geometry`` and ``bin``)."""

    def __init__(self, model_folder: str, device: str | None = None, threads: int | None = None,
                 optimize: str = "freeze", geometry: str | None = None, bin: int | None = None,
                 mc_samples: int = 0):
        import torch

        from factory.processing import preprocess
        from factory.processing.description import model_frame_shape
        from models.artifact import Predictor

        from .detectors import DetectorFrames

        self.predictor = Predictor(model_folder, device=device, batch_size=256, mc_samples=mc_samples)
        if threads and self.predictor.device.type == "cpu":  # a replica on a CPU: its own core(s)
            torch.set_num_threads(threads)
        self.predictor.model = optimized(self.predictor.model, self.predictor.description["input"]["shape"],
                                         optimize, self.predictor.device)
        self.preprocessing = self.predictor.description.get("preprocessing")
        self._apply = preprocess.apply
        from models.experimental import detector_frame, detector_of

        self.detector, det = detector_of(self.predictor.description)
        if self.detector is not None:  # trained through a measured detector model: frames take the same path
            desc = self.predictor.description
            self._apply = lambda _pre, img: detector_frame(desc, img, det)
        self.labels = self.predictor.labels if self.predictor.task != "classify" else ["class"]
        if mc_samples:  # the spread per label, and with a calibration the OOD score and the flag (models.uncertainty)
            from models.uncertainty import stream_fields

            self.labels = self.labels + stream_fields(self.labels)[: None if self.predictor.calibration else -2]
        shape = model_frame_shape(self.preprocessing, self.predictor.description["input"]["shape"])
        self.detector_frames = DetectorFrames(shape, geometry, bin) if shape else None

    def run(self, images: list[np.ndarray], detectors: list[str | None] | None = None
            ) -> tuple[np.ndarray, dict[str, np.ndarray], list[str]]:
        """(ok mask, {label: values for the ok frames}, reasons for the others, in order)."""
        ready, ok, reasons = [], np.zeros(len(images), bool), []
        for j, img in enumerate(images):
            det = detectors[j] if detectors else None
            if det is not None:
                try:
                    if self.detector_frames is None:
                        raise ValueError("the model takes no 2D frame")
                    img = self.detector_frames(img, det)
                except (ValueError, KeyError) as exc:
                    reasons.append(f"detector frame: {exc}")
                    continue
            try:
                ready.append(self._apply(self.preprocessing, img) if self.preprocessing else np.asarray(img, np.float32))
                ok[j] = True
            except (ValueError, KeyError) as exc:
                reasons.append(f"preprocessing: {exc}")
        if not ready:
            return ok, {n: np.zeros(0) for n in self.labels}, reasons
        out = self.predictor.predict(np.stack(ready))
        return ok, {n: np.asarray(out[n]) for n in self.labels}, reasons
