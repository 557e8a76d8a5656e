"""Explanations (Shvetsov-Shilovski & Lein, Phys. Rev. A 107, 033106 (2023), Sec. VI): occlusion,
Grad-CAM and LIME maps through captum; the occlusion dictionary.

The classifier is trained on images whose R evidence sits in one known patch (strong label-free
texture elsewhere), so the right answer is known: the maps must find the patch, and the
dictionary built from them must beat random areas of the same size by a clear margin.
"""

import numpy as np
import pytest

from factory.errors import StoreError
from models.artifact import ModelError
from models.explain import (Explained, attribute, dictionary_classify, explain_store, occlusion_dictionary,
                            random_masks)
from models.shifted_synthetic import make_local_evidence_store

LOCAL = ["run.backend=local", "run.cpus_per_worker=1"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from models.train import load_train_config, train

    d = tmp_path_factory.mktemp("explain")
    st = make_local_evidence_store(d / "evidence.zarr", n=320, shape=(32, 64))
    cfg = load_train_config("pmd-classifier/tiny", LOCAL + ["optim.epochs=7", "optim.lr_drop_epochs=[5]",
                                                            "optim.batch_size=16"])
    cls = train(cfg, st.path, d / "classifier", overwrite=True, progress=False)
    reg = train(load_train_config("pmd-cnn/tiny", LOCAL + ["optim.epochs=1"]), st.path, d / "regressor",
                overwrite=True, progress=False)
    return {"store": st, "classifier": cls.model, "accuracy": cls.final["val_accuracy"], "regressor": reg.model}


def test_occlusion_dictionary_beats_random_areas_on_held_out_images(trained, tmp_path):
    assert trained["accuracy"] > 0.7  # the classifier reads the patch
    res = occlusion_dictionary(trained["classifier"], trained["store"].path, tmp_path, per_cell=2, n_random=5,
                               max_test=60, window=(4, 8), stride=(4, 8))
    r = res["random_area"]
    assert res["accuracy"] > r["max"] + 0.2 and res["accuracy"] > r["mean"] + 0.3, res
    assert res["accuracy"] > res["chance"] + 0.3
    assert res["dictionary_entries"] >= 7 * 3 and res["test_images"] == 60
    assert set(res["dictionary_samples"]).isdisjoint(res["test_samples"])  # held-out: never classify a dictionary image
    assert (tmp_path / "dictionary-occlusion.png").is_file()


def test_maps_find_the_evidence_and_are_saved_as_overlays(trained, tmp_path):
    st = trained["store"]
    r0, r1, c0, c1 = st.meta["evidence_patch"]
    x = np.asarray(st.images[:3])
    inside = np.zeros(x.shape[1:], bool)
    inside[r0:r1, c0:c1] = True
    occ = attribute(trained["classifier"], x, "occlusion")
    assert occ.shape == x.shape and np.isfinite(occ).all()
    assert occ[:, inside].mean() > 3 * max(occ[:, ~inside].mean(), 1e-6)
    lime = attribute(trained["classifier"], x[:1], "lime", lime_samples=60)
    assert lime[0][inside].mean() > lime[0][~inside].mean()
    cam = attribute(trained["classifier"], x[:1], "gradcam")
    assert cam.shape == (1, *x.shape[1:]) and (cam >= 0).all()
    res = explain_store(trained["classifier"], st.path, tmp_path, method="occlusion", n=2)
    assert len(res["samples"]) == 2 and all(p.endswith(".png") for p in res["figures"])
    assert (tmp_path / "occlusion-000.png").is_file() and (tmp_path / "occlusion-maps.npz").is_file()


def test_regression_network_is_explained_too(trained, tmp_path):
    x = np.asarray(trained["store"].images[:2])
    for m in ("occlusion", "gradcam"):
        a = attribute(trained["regressor"], x, m)
        assert a.shape == x.shape and np.isfinite(a).all()
    assert Explained(trained["regressor"]).task == "regress"
    with pytest.raises(ModelError, match="classifier"):
        occlusion_dictionary(trained["regressor"], trained["store"].path)


def test_wrong_sizes_are_refused(trained, tmp_path):
    from models.shifted_synthetic import make_pmd_store

    other = make_pmd_store(tmp_path / "other.zarr", n=4, shape=(16, 32))
    with pytest.raises(StoreError, match="the model takes"):
        explain_store(trained["classifier"], other.path, tmp_path)
    with pytest.raises(StoreError, match="network takes"):
        attribute(trained["classifier"], np.zeros((1, 16, 32), np.float32))


def test_random_masks_have_the_same_area_and_the_dictionary_is_mse():
    rng = np.random.default_rng(0)
    m = random_masks(np.array([10, 55]), (16, 32), rng, smooth=2.0)
    assert m.reshape(2, -1).sum(1).tolist() == [10, 55]
    parts = rng.uniform(0, 1, (3, 8, 8))
    masks = np.zeros((3, 8, 8), bool)
    masks[:, 2:5, 2:5] = True
    x = parts[[2, 0]] + 0.01
    assert dictionary_classify(x, masks, parts, np.array([4, 5, 6])).tolist() == [6, 4]
