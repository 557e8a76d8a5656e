"""Export of a model's network for deployment: torch.export, TorchScript or ONNX (:func:`export_model`)."""

from __future__ import annotations

from pathlib import Path

import torch

from factory.outputs import check_file_output

from .card import ModelError
from .model_folder import load_network


#: export format -> (default file name in the model folder, kind of file it replaces)
EXPORT_FILES = {"export": ("model.pt2", "zip"), "torchscript": ("model.ts", "zip"), "onnx": ("model.onnx", "onnx")}


def export_model(folder: str | Path, out: str | Path | None = None, fmt: str = "export") -> Path:
    """Export the network for deployment.

    ``export`` (default): ``torch.export`` program ``model.pt2`` (``torch.export.load(path).module()``);
    ``torchscript``: ``model.ts`` (``torch.jit``, deprecated by PyTorch but still loadable from C++);
    ``onnx``: ``model.onnx`` (needs the onnx package).  The exported graph maps network-ready
    images (any batch size) to the raw (scaled) outputs; label scaling and preprocessing stay
    in the model card ``model.json`` next to it.

    Parameters
    ----------
    folder : str or pathlib.Path
        A model folder or checkpoint.
    out : str or pathlib.Path, optional
        The file to write; default ``model.pt2``, ``model.ts`` or ``model.onnx`` in
        ``folder``.  An existing file is replaced only when it is of the same kind.
    fmt : {"export", "torchscript", "onnx"}, optional
        The export format.

    Returns
    -------
    pathlib.Path
        The written file.

    Raises
    ------
    ModelError
        An unknown format, a missing or damaged model, or ONNX without the onnx package.
    OutputError
        ``out`` exists and is not a file of that kind.
    """
    folder = Path(folder)
    if fmt not in EXPORT_FILES:
        raise ModelError(f"export format {fmt!r}: choose export, torchscript or onnx")
    name, kind = EXPORT_FILES[fmt]
    out = check_file_output(out or folder / name, kind)  # before any work: replaces only a file of its kind
    model, card = load_network(folder)
    shape = card.input.shape
    example = torch.zeros((2, *shape), dtype=torch.float32)
    if fmt == "export":
        batch = torch.export.Dim("batch", min=1, max=1 << 16)
        prog = torch.export.export(model, (example,), dynamic_shapes=({0: batch},))
        torch.export.save(prog, str(out))
    elif fmt == "torchscript":
        import warnings

        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            torch.jit.trace(model, example, check_trace=False).save(str(out))
    elif fmt == "onnx":
        try:
            import onnx  # noqa: F401
        except ImportError:
            raise ModelError("ONNX export needs the onnx package: python3 -m pip install onnx onnxscript") from None
        torch.onnx.export(model, (example,), str(out), input_names=["images"], output_names=["outputs"],
                          dynamic_axes={"images": {0: "batch"}, "outputs": {0: "batch"}})
    return out
