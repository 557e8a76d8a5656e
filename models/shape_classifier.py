"""Shape classifier for single-shot scattering patterns, trained on simulation only (issue 15, item 5).

A small CNN (:class:`models.networks.PMDCNN`, 4 conv blocks of 32 filters on an 80 x 80 crop)
learns the particle shape from MSFT patterns of random size (circumradius uniform in 30-160 nm)
and uniformly random orientation, passed through the measured detector model
(:data:`factory.msft.detector_response.AG_CLUSTER_DETECTOR`: orientation convention, centre,
valid-pixel mask with bevel and hole, log display) with randomised display nuisances (gain,
saturation, log floor) and one of the eleven augmentation filters of Stielow, Schmidt, Peltz,
Fennel & Scheel, Mach. Learn.: Sci. Technol. (2020) (:mod:`factory.processing.augment`) per
image, re-drawn every epoch.  A measured 8-bit PNG reaches the same input space through
``DetectorResponse.measured_input``; the measured patterns (Barke et al., Nat. Commun. 6, 6187
(2015)) are only ever the test, never training or tuning data.

Public API::

    from models.shape_classifier import Recipe, simulate_bank, train_classifier, evaluate_bank,
        classify_measured, save_classifier, load_classifier, run
    res = run(Recipe(per_class=300, epochs=12), out="/tmp/shape-clf")   # simulate, train, test, save
    names, probs = classify_measured(model, shapes)                      # the eight packaged patterns

Command: ``python -m models.shape_classifier --out /tmp/shape-clf --per-class 300 --epochs 12``
(or ``factory classify-shapes``).  The saved model is an ordinary model folder
(:func:`models.artifact.save_model`: ``weights.safetensors`` + ``model.json`` card with
``task: classify``; the class names are in ``preprocessing.shapes``).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from factory.outputs import ResultFolder, check_replaceable, staged_output, user_path

SHAPE_CLASSES = ("sphere", "icosahedron", "cuboctahedron", "octahedron", "decahedron", "truncated_octahedron",
                 "truncated_twinned_tetrahedron")
# labels.csv names of the measured set (Barke et al., Nat. Commun. 2015) -> library shapes
MEASURED_NAMES = {"Decahedron": "decahedron", "Truncated Octahedron": "truncated_octahedron",
                  "Icosahedron": "icosahedron", "Truncated Twinned Tetrahedron": "truncated_twinned_tetrahedron"}
CROP = (24, 104, 24, 104)  # rows, cols of the network input: holds the measured detector's region (33..93, 28..99)
PREPROCESSING_NAME = "measured-detector-shape"


def detector():
    """The measured detector model (:data:`AG_CLUSTER_DETECTOR`)."""
    from factory.msft.detector_response import AG_CLUSTER_DETECTOR

    return AG_CLUSTER_DETECTOR


@dataclass
class Recipe:
    """Everything that defines a classifier run (recorded in the model card)."""

    shapes: tuple[str, ...] = SHAPE_CLASSES
    per_class: int = 300          # simulated training patterns per shape
    test_per_class: int = 60      # held-out simulated patterns per shape (other seed)
    radius_nm: tuple[float, float] = (30.0, 160.0)
    preset: str = "small"         # MSFT preset (factory.config), output switched to linear
    epochs: int = 12
    batch: int = 64
    lr: float = 2e-3
    filters: int = 32
    blocks: int = 4
    seed: int = 0
    # display nuisances drawn per image (the detector's gain / saturation / log floor)
    gain: tuple[float, float] = (1.0, 1.5)            # the authors' add_sat range
    saturation: tuple[float, float] = (0.2, 1.0)      # clip level, fraction of the valid-pixel max
    log_floor: tuple[float, float] = (1e-4, 1e-2)     # log-uniform
    filters_p_identity: float = 0.1                   # share of un-augmented images
    extra: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------------------- simulation
def msft_config(preset: str = "small"):
    """The preset's MSFT config with linear output and no background (the detector model adds
    the display; the augmentation filters add the noise)."""
    from factory.config import resolve_simulator_config

    cfg = resolve_simulator_config("msft", preset)
    return cfg.model_copy(update={"output": "linear", "background": 0.0, "fluence": None})


def uniform_quaternions(rng: np.random.Generator, n: int) -> np.ndarray:
    from scipy.spatial.transform import Rotation

    from factory.geometry.quaternions import from_rotation

    return from_rotation(Rotation.random(n, rng))


def simulate_bank(shapes, per_class: int, *, seed: int, preset: str = "small",
                  radius_nm=(30.0, 160.0), progress: bool = False) -> dict[str, np.ndarray]:
    """Linear MSFT patterns, ``per_class`` per shape, radius uniform, orientation uniform (Haar).

    Returns ``{"images": (N, rows, cols) float32 (each / its max), "labels": (N,) int,
    "radius_nm": (N,), "quat": (N, 4), "seconds": float}``.
    """
    from factory.msft.simulator import pattern

    cfg = msft_config(preset)
    rng = np.random.default_rng(seed)
    imgs, labels, radii, quats = [], [], [], []
    t0 = time.perf_counter()
    for k, shape in enumerate(shapes):
        r = rng.uniform(*radius_nm, size=per_class)
        q = uniform_quaternions(rng, per_class)
        for i in range(per_class):
            img = pattern(shape, float(r[i]), q[i], cfg).image.astype(np.float64)
            imgs.append((img / max(img.max(), 1e-30)).astype(np.float32))
        labels += [k] * per_class
        radii.append(r)
        quats.append(q)
        if progress:
            print(f"  simulated {shape}: {per_class} patterns ({time.perf_counter() - t0:.0f} s)", flush=True)
    return {"images": np.stack(imgs), "labels": np.array(labels, dtype=np.int64),
            "radius_nm": np.concatenate(radii), "quat": np.concatenate(quats),
            "seconds": time.perf_counter() - t0}


# ------------------------------------------------------------------------ input space
def crop(x: np.ndarray) -> np.ndarray:
    r0, r1, c0, c1 = CROP
    return x[..., r0:r1, c0:c1]


def simulated_input(linear: np.ndarray, rng: np.random.Generator | None = None, recipe: Recipe | None = None,
                    augment_filter: int | None = None) -> np.ndarray:
    """One linear pattern (rows, cols) -> network input (80 x 80 float32).

    ``rng=None``: the detector as fitted (no nuisances, no augmentation).  Otherwise gain,
    saturation and log floor are drawn from ``recipe`` and one of the eleven filters
    (``augment_filter`` or a random one) is applied to the display, then the mask again (the
    input is zero outside the valid pixels, like a measured one).
    """
    from factory.processing.augment import FILTERS, augment

    det = detector()
    if rng is None:
        return crop(det.apply(linear)).astype(np.float32)
    rec = recipe or Recipe()
    sat = float(rng.uniform(*rec.saturation))
    det = det.replace(gain=float(rng.uniform(*rec.gain)), saturation=sat,
                      log_floor=float(np.exp(rng.uniform(*np.log(rec.log_floor)))))
    v = det.apply(linear)
    if augment_filter is None:
        augment_filter = 0 if rng.random() < rec.filters_p_identity else int(rng.integers(1, len(FILTERS)))
    v = augment(v, augment_filter, rng) * det.mask()
    peak = v.max()
    if peak > 0:
        v = v / peak  # filters may dim the image; the display's 1 is its brightest valid pixel
    return crop(v).astype(np.float32)


def measured_input(png_0_255: np.ndarray) -> np.ndarray:
    """A measured 8-bit pattern -> network input (the detector's ``measured_input``, cropped)."""
    return crop(detector().measured_input(png_0_255)).astype(np.float32)


# ---------------------------------------------------------------------------- network
def build_network(n_classes: int, filters: int = 32, blocks: int = 4):
    from .networks import build

    r0, r1, c0, c1 = CROP
    return build("pmd-cnn", input_shape=(r1 - r0, c1 - c0), filters=filters, blocks=blocks, dropout=0.2,
                 outputs=n_classes)


def _inputs(images: np.ndarray, rng: np.random.Generator | None, recipe: Recipe) -> np.ndarray:
    return np.stack([simulated_input(im, rng, recipe) for im in images])


def train_classifier(bank: dict[str, np.ndarray], recipe: Recipe, *, val: dict[str, np.ndarray] | None = None,
                     progress: bool = False, init: nn.Module | None = None) -> tuple[nn.Module, list[dict[str, float]]]:
    """Train on ``bank`` (from :func:`simulate_bank`), fresh nuisances + filters every epoch.
    ``val``: a held-out bank, evaluated with the same random augmentation each epoch (seeded).
    ``init``: continue from this network (same architecture; its input standardisation kept)."""
    torch.manual_seed(recipe.seed)
    rng = np.random.default_rng(recipe.seed + 1 + (7919 if init is not None else 0))
    model = build_network(len(recipe.shapes), recipe.filters, recipe.blocks)
    if init is not None:
        model.load_state_dict(init.state_dict())
    else:
        x0 = _inputs(bank["images"][:: max(1, len(bank["images"]) // 200)], rng, recipe)
        model.norm.set(float(x0.mean()), float(x0.std()))
    opt = torch.optim.Adam(model.parameters(), lr=recipe.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, recipe.epochs))
    y_all = torch.as_tensor(bank["labels"])
    history = []
    for epoch in range(1, recipe.epochs + 1):
        t0 = time.perf_counter()
        x_all = torch.as_tensor(_inputs(bank["images"], rng, recipe))
        t_aug = time.perf_counter() - t0
        model.train()
        perm = torch.randperm(len(y_all))
        loss_sum, n = 0.0, 0
        for s in range(0, len(perm), recipe.batch):
            idx = perm[s:s + recipe.batch]
            if len(idx) < 2:
                continue
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(x_all[idx]), y_all[idx])
            loss.backward()
            opt.step()
            loss_sum += float(loss.detach()) * len(idx)
            n += len(idx)
        sched.step()
        rec = {"epoch": epoch, "train_loss": loss_sum / max(n, 1), "epoch_s": time.perf_counter() - t0, "augment_s": t_aug}
        if val is not None:
            acc, _ = evaluate_bank(model, val, recipe, seed=recipe.seed + 99)
            rec["val_accuracy"] = float(np.mean(list(acc.values())))
        history.append(rec)
        if progress:
            print("  " + ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in rec.items()), flush=True)
    model.eval()
    return model, history


@torch.no_grad()
def predict_proba(model: nn.Module, x: np.ndarray) -> np.ndarray:
    model.eval()
    return torch.softmax(model(torch.as_tensor(np.asarray(x, dtype=np.float32))), dim=1).numpy()


def evaluate_bank(model: nn.Module, bank: dict[str, np.ndarray], recipe: Recipe, *, seed: int,
                  augmented: bool = True) -> tuple[dict[str, float], np.ndarray]:
    """Per-shape accuracy and the confusion matrix (rows true, cols predicted) on a held-out bank
    (augmented with a fixed seed, or the plain detector with ``augmented=False``)."""
    rng = np.random.default_rng(seed) if augmented else None
    x = _inputs(bank["images"], rng, recipe)
    pred = predict_proba(model, x).argmax(1)
    k = len(recipe.shapes)
    conf = np.zeros((k, k), dtype=int)
    for t, p in zip(bank["labels"], pred):
        conf[t, p] += 1
    acc = {s: float(conf[i, i] / max(conf[i].sum(), 1)) for i, s in enumerate(recipe.shapes)}
    return acc, conf


def classify_measured(model: nn.Module, shapes=SHAPE_CLASSES) -> list[dict[str, Any]]:
    """The eight packaged measured patterns: true label (labels.csv), prediction, probabilities."""
    from factory.msft.measured import ag_cluster_labels, load_ag_clusters

    labels = ag_cluster_labels()
    ims = load_ag_clusters()
    x = np.stack([measured_input(im) for im in ims.values()])
    prob = predict_proba(model, x)
    out = []
    for (name, _), p in zip(ims.items(), prob):
        out.append({"pattern": name, "true": MEASURED_NAMES.get(labels[name], labels[name]),
                    "predicted": shapes[int(p.argmax())], "p": {s: round(float(v), 4) for s, v in zip(shapes, p)}})
    return out


# ---------------------------------------------------------------------------- artefact
def save_classifier(folder: str | Path, model: nn.Module, recipe: Recipe, history=None) -> Path:
    """An ordinary model folder (safetensors + card, ``task: classify``)."""
    from .artifact import now, save_model
    from .card import Architecture, Classes, InputSpec, ModelCard

    r0, r1, c0, c1 = CROP
    det = detector()
    card = ModelCard(
        architecture=Architecture(name="pmd-cnn", kwargs={"input_shape": [r1 - r0, c1 - c0], "filters": recipe.filters,
                                                          "blocks": recipe.blocks, "dropout": 0.2,
                                                          "outputs": len(recipe.shapes)}),
        task="classify",
        labels=("shape",),
        classes=Classes(label="shape", edges=tuple(float(i) for i in range(len(recipe.shapes) + 1))),
        input=InputSpec(shape=(r1 - r0, c1 - c0), dims=("row", "col"),
                        mean_std=(float(model.norm.mean), float(model.norm.std))),
        preprocessing={"name": PREPROCESSING_NAME, "shapes": list(recipe.shapes), "crop": list(CROP),
                       "detector": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(det).items()},
                       "recipe": json.loads(json.dumps(asdict(recipe))),
                       "history": history or []},
        created=now(),
    )
    from .train_runs import is_model_folder

    folder = user_path(folder)
    with staged_output(folder, overwrite=True, what="model folder", recognise=is_model_folder) as tmp:
        save_model(tmp, model, card)
    return folder


def load_classifier(folder: str | Path) -> tuple[nn.Module, tuple[str, ...]]:
    """(network in eval mode, class names) of a folder written by :func:`save_classifier`."""
    from .artifact import load_network
    from .card import ModelError

    model, card = load_network(folder)
    pre = card.preprocessing if isinstance(card.preprocessing, dict) else {}
    if card.task != "classify" or pre.get("name") != PREPROCESSING_NAME:
        raise ModelError(f"{folder}: not a shape classifier (task {card.task}, preprocessing {pre.get('name')!r})")
    return model, tuple(pre["shapes"])


# ---------------------------------------------------------------------------- the run
def run(recipe: Recipe, out: str | Path | None = None, progress: bool = True,
        init_from: str | Path | None = None) -> dict[str, Any]:
    """Simulate, train, test on held-out simulations and on the eight measured patterns, save.
    ``init_from``: a classifier folder to continue training from (``recipe.epochs`` more epochs)."""
    from .train_runs import is_model_folder

    if out is not None:  # before any work: result.json beside the user's files, model/ only one of ours
        results = ResultFolder(out, ("result.json",))
        check_replaceable(results.path / "model", overwrite=True, what="model folder", recognise=is_model_folder)
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    train = simulate_bank(recipe.shapes, recipe.per_class, seed=recipe.seed, preset=recipe.preset,
                          radius_nm=recipe.radius_nm, progress=progress)
    test = simulate_bank(recipe.shapes, recipe.test_per_class, seed=recipe.seed + 1000, preset=recipe.preset,
                         radius_nm=recipe.radius_nm, progress=progress)
    t_sim = time.perf_counter() - t0
    t1 = time.perf_counter()
    init = load_classifier(init_from)[0] if init_from is not None else None
    model, history = train_classifier(train, recipe, val=test, progress=progress, init=init)
    t_train = time.perf_counter() - t1
    acc_aug, conf_aug = evaluate_bank(model, test, recipe, seed=recipe.seed + 2000)
    acc_plain, conf_plain = evaluate_bank(model, test, recipe, seed=0, augmented=False)
    measured = classify_measured(model, recipe.shapes)
    result = {
        "recipe": asdict(recipe), "init_from": None if init_from is None else str(init_from),
        "images_train": int(len(train["labels"])), "images_test": int(len(test["labels"])),
        "simulate_s": round(t_sim, 1), "train_s": round(t_train, 1), "epochs": recipe.epochs,
        "history": history,
        "test_accuracy_augmented": acc_aug, "test_confusion_augmented": conf_aug.tolist(),
        "test_accuracy_plain": acc_plain, "test_confusion_plain": conf_plain.tolist(),
        "measured": measured,
        "measured_correct": int(sum(m["true"] == m["predicted"] for m in measured)),
    }
    if out is not None:
        result["model"] = str(save_classifier(results.path / "model", model, recipe, history))
        results.write_text("result.json", json.dumps(result, indent=1))
    return result


def format_result(res: dict[str, Any]) -> str:
    shapes = res["recipe"]["shapes"]
    lines = [f"{res['images_train']} training / {res['images_test']} test simulated patterns, {res['epochs']} epochs; "
             f"simulation {res['simulate_s']:.0f} s, training {res['train_s']:.0f} s",
             "held-out simulated accuracy (augmented | detector only):"]
    for s in shapes:
        lines.append(f"  {s:32s} {res['test_accuracy_augmented'][s]:.3f} | {res['test_accuracy_plain'][s]:.3f}")
    lines.append(f"measured patterns: {res['measured_correct']} of {len(res['measured'])} correct")
    for m in res["measured"]:
        top = sorted(m["p"].items(), key=lambda kv: -kv[1])[:2]
        lines.append(f"  {m['pattern']}: true {m['true']:30s} predicted {m['predicted']:30s} "
                     f"({', '.join(f'{k} {v:.2f}' for k, v in top)})")
    if "model" in res:
        lines.append(f"model: {res['model']}")
    return "\n".join(lines)


def main(argv=None) -> None:
    import argparse

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, help="folder for model/ and result.json (outside the repository)")
    p.add_argument("--per-class", type=int, default=Recipe.per_class)
    p.add_argument("--test-per-class", type=int, default=Recipe.test_per_class)
    p.add_argument("--epochs", type=int, default=Recipe.epochs)
    p.add_argument("--preset", default=Recipe.preset)
    p.add_argument("--seed", type=int, default=Recipe.seed)
    p.add_argument("--lr", type=float, default=Recipe.lr)
    p.add_argument("--init-from", default=None, help="continue training this classifier folder")
    a = p.parse_args(argv)
    res = run(Recipe(per_class=a.per_class, test_per_class=a.test_per_class, epochs=a.epochs, preset=a.preset,
                     seed=a.seed, lr=a.lr), out=a.out, init_from=a.init_from)
    print(format_result(res))


if __name__ == "__main__":
    main()
