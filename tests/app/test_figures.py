"""Every figure type, rendered from tiny stores and models and checked through matplotlib's object
model (not pixels): axes name a quantity with its unit, every image has a colour bar whose label
names the scale (log10 where the data are log-scaled), augmentation panels carry filter names,
predictions are in physical units and a parameter no better than the mean predictor is flagged.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from matplotlib.image import AxesImage

from factory.compute.executor import LocalExecutor
from factory.config import load_config
from factory.plots import param_hist_figure, samples_figure
from factory.plots.style import plt
from factory.store import DatasetStore

UNIT = re.compile(r"\(([^()]+)\)\s*$")  # "k_x (a.u.)": a unit in parentheses at the end


def image_axes(fig):
    return [ax for ax in fig.axes if any(isinstance(a, AxesImage) for a in ax.get_children())]


def colorbar_label(ax) -> str:
    """The label of the colour bar of the (top) image of ``ax``; fails if it has none."""
    cbs = [im.colorbar for im in ax.images if im.colorbar is not None]
    assert cbs, f"an image without a colour bar: {ax.get_title()!r}"
    label = cbs[-1].ax.get_ylabel() or cbs[-1].ax.get_xlabel()
    assert label.strip(), f"a colour bar without a label: {ax.get_title()!r}"
    return label


def is_log(label: str) -> bool:
    return "log$_{10}$" in label or "log10" in label


def assert_units(*labels: str) -> None:
    for text in labels:
        assert UNIT.search(text), f"no unit in parentheses: {text!r}"


def assert_images_labelled(fig, log: bool | None = None) -> list[str]:
    """Every image axes: a named colour bar (saying log10 iff ``log``), x and y labels with units."""
    axes = image_axes(fig)
    assert axes, "no image in the figure"
    labels = []
    for ax in axes:
        label = colorbar_label(ax)
        if log is not None:
            assert is_log(label) == log, label
        assert_units(ax.get_xlabel(), ax.get_ylabel())
        labels.append(label)
    plt.close(fig)
    return labels


# -- tiny stores ---------------------------------------------------------------------------------------
def tdse_like_store(path) -> DatasetStore:
    """A store laid out as `factory generate tdse/tiny` writes it (axes, labels, the simulator's units),
    filled with Gaussian PMDs over four decades instead of a physics run (figures only; building
    the TDSE simulator takes seconds)."""
    from factory.simulation import Coord
    from factory.tdse.simulator import DIAGNOSTICS, PARAMS, UNITS

    k = np.linspace(-3.0, 3.0, 41)
    st = DatasetStore.create(path, kind="tdse", n_samples=4, chunk=2, param_names=PARAMS, diagnostic_names=DIAGNOSTICS,
                             coords=(Coord("ky", k, "a.u.", "momentum"), Coord("kx", k, "a.u.", "momentum")),
                             config_hash="tdse-like", extra_attrs={"simulator": {"units": UNITS}})
    gauss = np.exp(-(k[None, :] ** 2 + k[:, None] ** 2))
    images = np.stack([gauss * 10.0**-i for i in range(4)]).astype(np.float32)
    rng = np.random.default_rng(0)
    labels = {n: rng.uniform(1, 8, 4) for n in PARAMS} | {"intensity": rng.uniform(1e14, 4e14, 4)}
    for s, e in st.blocks():
        st.write_block(s, images[s:e], {n: v[s:e] for n, v in labels.items()}, {n: np.ones(e - s) for n in DIAGNOSTICS})
    return DatasetStore.open(path)


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    from factory.engine import generate
    from factory.processing.steps import augment_store
    from models.shifted_synthetic import make_pmd_store
    from models.synthetic import make_store

    d = tmp_path_factory.mktemp("figures")
    msft = DatasetStore.open(generate(load_config("msft/tiny", ["chunk=2"], samples=2), d / "msft.zarr",
                                      executor=LocalExecutor(), progress=False).path)
    net = make_pmd_store(d / "net.zarr", n=4, shape=(16, 32), split=(1.0, 0.0, 0.0), chunk=2)
    aug = DatasetStore.open(augment_store(net.path, d / "aug.zarr", factor=11, only_split="all",
                                          executor=LocalExecutor(), progress=False).path)
    prof = make_store(d / "prof.zarr", kind="profiles", n=4, chunk=2, shape=(64,))
    return {"tdse": tdse_like_store(d / "tdse.zarr"), "msft": msft, "net": net, "aug": aug, "profiles": prof}


# -- stores: montages and histograms -----------------------------------------------------------------------
def test_tdse_montage_names_log_scale_units_and_labels(stores):
    fig = samples_figure(stores["tdse"], n=4, log=True, labels=["R", "intensity"])
    axes = image_axes(fig)
    assert len(axes) == 4
    for ax in axes:
        assert "(a.u.)" in ax.get_xlabel() and "k_x" in ax.get_xlabel() and "k_y" in ax.get_ylabel()
        assert re.search(r"R = [\d.]+ a\.u\., I = [\d.e]+ W/cm", ax.get_title()), ax.get_title()
        assert ax.images[0].get_clim() == (-6.0, 0.0)
    assert all("P$_{max}$" in lab for lab in assert_images_labelled(fig, log=True))
    linear = samples_figure(stores["tdse"], n=2, log=False)
    assert all("a.u." in lab for lab in assert_images_labelled(linear, log=False))


def test_msft_montage_shows_stored_log_images_as_they_are(stores):
    st = stores["msft"]
    assert st.meta["simulator"]["image_scale"] == "log10"
    fig = samples_figure(st, n=2, log=True, labels=["radius", "q0"])  # --log on log data: not logged twice
    ax = image_axes(fig)[0]
    np.testing.assert_allclose(ax.images[0].get_array(), np.asarray(st.images[0]), rtol=1e-6)
    assert "q_x" in ax.get_xlabel() and "(1/nm)" in ax.get_xlabel()
    assert re.search(r"radius = [\d.]+ nm", ax.get_title()), ax.get_title()
    assert_images_labelled(fig, log=True)


def test_network_input_and_augmentation_panels(stores):
    labels = assert_images_labelled(samples_figure(stores["net"], n=2), log=True)
    assert all("network input" in lab and "0..255" in lab for lab in labels)
    from factory.processing.augment import FILTER_NAMES

    fig = samples_figure(stores["aug"], n=11, labels=["augmentation"])
    titles = [ax.get_title() for ax in image_axes(fig)]
    assert [t.split(": ", 1)[1] for t in titles] == FILTER_NAMES  # the filter, not "augmentation=3"
    assert_images_labelled(fig, log=True)


def test_profile_montage_and_label_histograms(stores):
    fig = samples_figure(stores["profiles"], n=2)
    for ax in fig.axes:
        if ax.lines:
            assert_units(ax.get_xlabel(), ax.get_ylabel())
    plt.close(fig)
    fig = param_hist_figure(stores["tdse"])
    shown = [ax for ax in fig.axes if ax.patches]
    assert {ax.get_title() for ax in shown} >= {"R", "intensity", "cep"}
    for ax in shown:
        assert ax.get_ylabel() == "count"
        assert_units(ax.get_xlabel())
    assert "(W/cm$^2$)" in next(ax for ax in shown if ax.get_title() == "intensity").get_xlabel()
    plt.close(fig)


# -- single-image plots of the CLI ---------------------------------------------------------------------------
def test_pmd_and_pattern_figures():
    from factory.app.msft import pattern_figure
    from factory.msft.simulator import pattern
    from factory.tdse.api import PMDResult
    from factory.tdse.figures import pmd_figure

    k = np.linspace(-3, 3, 61)
    res = PMDResult(pmd=np.exp(-(k[None] ** 2 + k[:, None] ** 2)), kx=k, ky=k, energy=-1.1, norm_left=1.0, absorbed=1e-4,
                    total_yield=1e-4, params={"R": 2.0, "intensity": 3e14, "cep": 0.0, "alpha": 0.0})
    fig = pmd_figure(res)
    assert "a.u." in fig.axes[0].get_title() and "W/cm" in fig.axes[0].get_title()
    assert_units(*(t for ax in fig.axes[:2] for t in (ax.get_xlabel(), ax.get_ylabel())))
    assert_images_labelled(fig, log=True)
    cfg = load_config("msft/tiny").simulator
    p = pattern("icosahedron", 40.0, np.array([1.0, 0, 0, 0]), cfg)
    fig = pattern_figure(p, "icosahedron", 40.0, [1.0, 0, 0, 0], cfg)
    assert "R = 40 nm" in fig.axes[0].get_title() and "(1/nm)" in fig.axes[0].get_xlabel()
    assert_images_labelled(fig, log=True)


# -- evaluation figures ------------------------------------------------------------------------------------
def test_pred_vs_true_units_and_worse_than_mean_predictor_flag():
    from matplotlib.colors import to_rgba

    from models.evaluate import error_hist_figure, pred_vs_true_figure

    rng = np.random.default_rng(0)
    t = {"radius": rng.uniform(30, 160, 50), "q0": rng.uniform(0.8, 1.0, 50)}
    p = {"radius": t["radius"] + rng.normal(0, 2, 50), "q0": rng.uniform(0.8, 1.0, 50)}  # q0: guessing
    mean_mae = {n: float(np.mean(np.abs(t[n] - t[n].mean()))) for n in t}
    fig = pred_vs_true_figure(t, p, "model", units={"radius": "nm", "q0": ""}, mean_predictor_mae=mean_mae)
    ax_r, ax_q = fig.axes
    assert ax_r.get_xlabel() == "true radius (nm)" and ax_r.get_ylabel() == "predicted radius (nm)"
    assert "MAE" in ax_r.get_title() and "nm" in ax_r.get_title()
    assert ax_q.get_xlabel() == "true q0 (dimensionless)"
    red = to_rgba("tab:red")
    assert ax_q.title.get_color() == "tab:red" or to_rgba(ax_q.title.get_color()) == red
    assert "worse than the mean predictor" in ax_q.get_title()
    assert to_rgba(ax_r.title.get_color()) != red and "worse" not in ax_r.get_title()
    plt.close(fig)
    fig = error_hist_figure(t, p, units={"radius": "nm", "q0": ""})
    for ax in fig.axes:
        assert ax.get_ylabel() == "count"
        assert_units(ax.get_xlabel())
    assert "(nm)" in fig.axes[0].get_xlabel()
    plt.close(fig)


def test_relative_errors_have_readable_log_ticks():
    from models.evaluate import relative_errors_figure

    rng = np.random.default_rng(1)
    fig = relative_errors_figure(rng.uniform(0.02, 0.08, 200), rng.uniform(0.05, 0.3, 200))
    ax = fig.axes[0]
    fig.canvas.draw()
    lo, hi = ax.get_xlim()
    shown = [t.get_text() for t, v in zip(ax.get_xticklabels(), ax.get_xticks()) if lo <= v <= hi and t.get_text()]
    assert len(shown) >= 3, shown  # not a single "10"
    assert ax.get_ylabel().startswith("count") and "(%)" in ax.get_xlabel()
    plt.close(fig)


def test_loss_figure_groups_quantities_and_keeps_legends_outside():
    from models.evaluate import history_figure

    hist = [{"epoch": e, "train_loss": 1.0 / e, "val_loss": 1.2 / e, "val_mae_radius": 10.0 / e,
             **{f"val_mae_q{i}": 0.1 / e for i in range(4)}} for e in range(1, 5)]
    fig = history_figure(hist, "resnet")
    fig.canvas.draw()
    assert len(fig.axes) == 3  # loss; radius (nm); the quaternions (dimensionless): never on one axis
    shown = {ax.get_ylabel(): {line.get_label() for line in ax.lines} for ax in fig.axes}
    assert shown["validation MAE (nm)"] == {"radius"}
    assert shown["validation MAE (dimensionless)"] == {"q0", "q1", "q2", "q3"}
    assert "dimensionless" in fig.axes[0].get_ylabel()
    for ax in fig.axes:
        leg = ax.get_legend()
        assert leg is not None
        assert leg.get_window_extent().x0 >= ax.get_window_extent().x1  # beside the data, not over it
    assert fig.axes[-1].get_xlabel() == "epoch"
    plt.close(fig)


def test_learning_curve_transfer_fig4b_fig5_and_baselines_figures():
    from models.evaluate import pred_true_panel
    from models.experimental import fig5_figure
    from models.forward_fit.fig4b import fig4b_figure
    from models.learning_curve import learning_curve_figure
    from models.transfer import transfer_figure

    fig = learning_curve_figure({"label": "R", "unit": "a.u.", "points": [{"N": n, "mae": 3 / n**0.5} for n in (8, 16, 32)]})
    assert fig.axes[0].get_ylabel() == "MAE of R (a.u.)"
    plt.close(fig)
    t = np.linspace(1, 8, 20)
    ev = {"original": {"per_label": {"R": {"mae": 3.0, "mae_mean_predictor": 1.75}}},
          "transfer": {"per_label": {"R": {"mae": 0.2, "mae_mean_predictor": 1.75}}}}
    fig = transfer_figure({"original": (t, t[::-1]), "transfer": (t, t + 0.2)}, ev, "R", "a.u.")
    assert [ax.get_xlabel() for ax in fig.axes] == ["true R (a.u.)"] * 2
    assert "worse than the mean predictor" in fig.axes[0].get_title() and "worse" not in fig.axes[1].get_title()
    plt.close(fig)
    fig = fig4b_figure({"simulations": [10, 100], "median": [0.1, 0.05], "q05": [0.05, 0.02], "q95": [0.2, 0.1]}, None)
    assert_units(fig.axes[0].get_xlabel(), fig.axes[0].get_ylabel())
    plt.close(fig)
    rows = [{"name": "barke5", "measured": np.random.default_rng(2).random((16, 16)), "resimulated": np.ones((16, 16)),
             "quaternion": [1.0, 0, 0, 0], "radius_nm": 60.0, "simulated_radius_nm": 60.0, "correlation": 0.5}]
    assert_images_labelled(fig5_figure(rows), log=True)
    fig, ax = plt.subplots()  # the panel of the baselines' figure (plot_methods): the label's known unit
    pred_true_panel(ax, t, t + 0.1, "R", "knn")
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("true R (a.u.)", "predicted R (a.u.)")
    plt.close(fig)


def test_stream_png_sink_names_units(tmp_path):
    from models.stream.sinks import PngSink

    sink = PngSink(tmp_path / "live.png", ["radius", "q0"], every_s=1e9)
    sink.write([0, 1, 2], None, {"radius": [50.0, 60.0, 70.0], "q0": [0.9, 0.95, 1.0]})
    fig = sink.figure()
    assert [ax.get_ylabel() for ax in fig.axes] == ["predicted radius (nm)", "predicted q0 (dimensionless)"]
    assert_units(fig.axes[-1].get_xlabel())
    plt.close(fig)
    sink.flush()
    assert (tmp_path / "live.png").stat().st_size > 1000


# -- explanations: physical predictions, a perceptual colour map with its colour bar ---------------------------
def test_explain_titles_in_physical_units_and_overlay_colour_bar(stores, tmp_path, torch_one_thread):
    from models.artifact import Predictor
    from models.explain import (Explained, attribute, dictionary_figure, explain_store, image_frame, map_label,
                                overlay_figure)
    from models.train import load_train_config, train

    st = stores["net"]
    from models.shifted_synthetic import make_pmd_store

    big = make_pmd_store(tmp_path / "train.zarr", n=16, shape=(16, 32), chunk=8)
    cfg = load_train_config("pmd-cnn/tiny", ["run.backend=local", "run.cpus_per_worker=1", "optim.epochs=1",
                                             "model.options.blocks=2"])
    model = train(cfg, big.path, tmp_path / "model", overwrite=True, progress=False).model
    res = explain_store(model, st.path, tmp_path / "explain", n=2, indices=[0, 1])
    physical = Predictor(model, device="cpu").predict(np.asarray(st.images[:2]))["R"]
    for title, want in zip(res["titles"], physical):
        m = re.search(r"predicted R = ([-\d.e]+) a\.u\.", title)
        assert m, title
        got = float(m.group(1))
        # not the scaled [0, 1] output; the title rounds to 3 significant digits (2.2952 -> '2.3')
        assert got == pytest.approx(want, rel=5e-3, abs=5e-3), (title, want)
        assert re.search(r"true R = [\d.]+ a\.u\.", title)
    ex = Explained(model)
    img = np.asarray(st.images[:1])
    m = attribute(ex, img, "occlusion")[0]
    fig = overlay_figure(img[0], m, title=res["titles"][0], map_label=map_label("occlusion", ex, "a.u."),
                         frame=image_frame(st))
    ax = image_axes(fig)[0]
    assert ax.images[-1].get_cmap().name in ("magma", "RdBu_r")  # not jet
    assert "predicted R (a.u.)" in colorbar_label(ax)
    assert_images_labelled(fig)
    parts = np.asarray(st.images[:2])
    fig = dictionary_figure(parts, parts > parts.mean(), np.array([0, 1]), "network input: log$_{10}$(P / P$_{max}$)")
    assert_images_labelled(fig, log=True)
