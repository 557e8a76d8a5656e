"""The model card: typed, frozen, versioned; version 1 cards (written before it was typed) still
load, evaluate and resume; a damaged or foreign card is one ModelError line."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from pydantic import ValidationError
from typer.testing import CliRunner

from models.artifact import Predictor, load_model, load_network, read_card, read_description, save_model
from models.card import VERSION, EpochRecord, ModelCard, ModelError, as_card
from models.networks import build
from models.synthetic import make_store

#: a final model's card exactly as `factory train` wrote it at commit d32a23f (card version 1):
#: pmd-cnn/tiny, 2 epochs, on make_store(n=32, chunk=8, shape=(32, 32))
V1 = Path(__file__).resolve().parents[1] / "fixtures" / "model_card_v1.json"
LOCAL = ["run.backend=local", "run.cpus_per_worker=1"]


def v1_model(folder: Path, checkpoint: bool = False) -> Path:
    """A version 1 model folder: the recorded card and weights of its architecture (seeded)."""
    card = json.loads(V1.read_text())
    if checkpoint:  # a checkpoint's card: no selected epoch
        del card["training"]["selected_epoch"]
    folder.mkdir(parents=True)
    (folder / "model.json").write_text(json.dumps(card, indent=1))
    torch.manual_seed(0)
    net = build(card["architecture"]["name"], **card["architecture"]["kwargs"])
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(folder / "weights.safetensors"))
    return folder


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return make_store(tmp_path_factory.mktemp("card") / "s.zarr", n=32, chunk=8, shape=(32, 32))


def test_a_version_1_model_loads_predicts_and_evaluates(store, tmp_path):
    from models.evaluate import evaluate

    folder = v1_model(tmp_path / "model")
    card = read_card(folder)
    assert card.version == VERSION and card.format == "factory-model"  # upgraded in memory
    assert card.architecture.describe() == "pmd-cnn(blocks=5, dropout=0.2, filters=32, input_shape=[32, 32], outputs=1)"
    assert card.labels == ("R",) and card.input.shape == (32, 32) and card.training.selected_epoch == 2
    assert [h.epoch for h in card.history] == [1, 2] and card.history[0].model_extra == {"val_mae_R": 2.618123447648071}
    assert card.training_set.config_hash == store.config_hash and card.training_set.split.n_val == 8
    # the compatibility path: the same card as a plain dict, every v1 key where it was
    plain, raw = read_description(folder), json.loads(V1.read_text())
    assert {k: v for k, v in plain.items() if k != "version"} == {k: v for k, v in raw.items() if k != "version"}
    net, desc = load_model(folder)
    assert desc == plain and isinstance(net, torch.nn.Module)
    p = Predictor(folder, device="cpu")
    assert p.card == card and p.description == plain
    x = np.asarray(store.images[:3])
    assert np.allclose(p.predict(x)["R"], p.scaling.inverse(net(torch.from_numpy(x)).detach().numpy())[:, 0])
    ev = evaluate(folder, store.path)
    assert ev["samples"] == 8 and ev["subset"].startswith("the validation split")


def test_a_run_checkpointed_in_version_1_resumes(store, tmp_path):
    """A run folder whose checkpoint was written before the card was typed continues, and its
    model gets a version 2 card holding the whole history."""
    from models.train import load_train_config, train
    from models.train_runs import MANIFEST_VERSION, RUN_SCHEMA, save_npy, write_manifest

    out = tmp_path / "run"
    ckpt = v1_model(out / "checkpoints" / "attempt-0" / "epoch-0002", checkpoint=True)
    net = build("pmd-cnn", **json.loads(V1.read_text())["architecture"]["kwargs"])
    torch.save(torch.optim.Adam(net.parameters(), lr=3e-3).state_dict(), ckpt / "optimizer.pt")
    cfg = load_train_config("pmd-cnn/tiny", LOCAL + ["optim.epochs=3", "optim.lr_drop_epochs=[]"])
    write_manifest(out, {"schema": RUN_SCHEMA, "version": MANIFEST_VERSION, "config": cfg.resolved(), "attempts": []})
    save_npy(out / "targets.npy", np.zeros((32, 1), np.float32))
    res = train(cfg, store.path, out, resume=True, progress=False)
    assert res.start_epoch == 2 and [h["epoch"] for h in res.history] == [1, 2, 3]
    written = json.loads((out / "model" / "model.json").read_text())
    assert written["version"] == 2 and len(written["training"]["history"]) == 3
    assert written["training"]["history"][0] == json.loads(V1.read_text())["training"]["history"][0]


def test_card_is_frozen_and_round_trips_with_non_finite_metrics(tmp_path):
    card = ModelCard.from_dict(json.loads(V1.read_text()))
    with pytest.raises(ValidationError):
        card.task = "classify"
    rec = EpochRecord(epoch=3, lr=1e-3, train_loss=0.1, val_loss=math.inf, epoch_s=1.0,
                      train_images_per_s=float("nan"), val_mae_R=0.5)
    grown = card.with_training(epoch=3, history=(*card.history, rec))
    assert card.epoch == 2 and grown.epoch == 3  # a copy; the original unchanged
    grown.write(tmp_path)
    back = read_card(tmp_path)
    last = back.history[-1]
    assert last.val_loss == math.inf and math.isnan(last.train_images_per_s) and last.model_extra == {"val_mae_R": 0.5}
    assert back.model_dump(exclude={"training"}) == grown.model_dump(exclude={"training"})


def test_a_minimal_serving_card_from_a_dict(tmp_path):
    """What a network made outside `factory train` needs (a benchmark's, a test's): defaults fill the rest."""
    net = build("pmd-cnn", input_shape=[16, 16], outputs=2, filters=4, blocks=2)
    save_model(tmp_path, net, {"architecture": {"name": "pmd-cnn", "kwargs": {"input_shape": [16, 16], "outputs": 2,
                                                                             "filters": 4, "blocks": 2}},
                               "labels": ["R", "I"], "task": "regress", "input": {"shape": [16, 16]}})
    model, card = load_network(tmp_path)
    assert card.parameters == sum(p.numel() for p in model.parameters()) and card.training is None
    assert card.input.mean_std == (0.0, 1.0) and card.label_stats == {} and card.history == () and card.epoch == 0
    assert Predictor(tmp_path, device="cpu").predict(np.zeros((2, 16, 16), np.float32))["I"].shape == (2,)


@pytest.mark.parametrize("damage, message", [
    (lambda t: "{not json", "damaged model card"),
    (lambda t: json.dumps({**json.loads(t), "format": "other"}), "not a factory-model card"),
    (lambda t: json.dumps([1, 2]), "not a factory-model card"),
    (lambda t: json.dumps({**json.loads(t), "version": 3}), "newer factory; upgrade"),
    (lambda t: json.dumps({**json.loads(t), "version": 0}), "card version 0 is unknown"),
    (lambda t: json.dumps({k: v for k, v in json.loads(t).items() if k != "architecture"}), "architecture: Field required"),
    (lambda t: json.dumps({**json.loads(t), "labels": "R"}), "labels"),
    (lambda t: json.dumps({**json.loads(t), "task": "classify"}), "needs classes"),
    (lambda t: json.dumps({**json.loads(t), "labels": ["R", "I"]}), r"label_scaling is for \['R'\], the labels are \['R', 'I'\]\)"),
    (lambda t: json.dumps({**json.loads(t), "surprise": 1}), "surprise: Extra inputs are not permitted"),
])
def test_a_damaged_or_foreign_card_is_one_model_error(tmp_path, damage, message):
    folder = v1_model(tmp_path / "model")
    (folder / "model.json").write_text(damage(V1.read_text()))
    with pytest.raises(ModelError, match=message) as info:
        read_card(folder)
    assert "\n" not in str(info.value) and str(folder / "model.json") in str(info.value)


def test_a_damaged_card_is_one_error_line_on_the_command_line(store, tmp_path):
    from factory.app.learning import app

    folder = v1_model(tmp_path / "model")
    (folder / "model.json").write_text(json.dumps({**json.loads(V1.read_text()), "input": {"shape": "big"}}))
    r = CliRunner().invoke(app, ["evaluate", str(folder), str(store.path)])
    errors = [l for l in r.output.splitlines() if l.startswith("error: ")]
    assert r.exit_code == 2 and len(errors) == 1 and "damaged model card (input.shape" in errors[0], r.output


def test_as_card_takes_the_plain_form_and_the_job_is_typed():
    from models.train import load_train_config
    from models.train_job import TrainJob

    card = as_card(json.loads(V1.read_text()))
    assert as_card(card) is card and as_card(card.to_dict()) == card
    job = TrainJob(config=load_train_config("pmd-cnn/tiny", LOCAL), card=card, store="s.zarr", train=np.arange(24),
                   val=np.arange(24, 32), targets_file="t.npy", input_stats=(0.5, 2.0), storage="ckpts",
                   attempt_name="attempt-0")
    back = TrainJob.from_dict(json.loads(json.dumps(job.to_dict())))  # plain data across a process boundary
    assert back.card == card and back.config == job.config and back.input_stats == (0.5, 2.0)
    assert np.array_equal(back.train, job.train) and back.train.dtype == np.int64
    with pytest.raises(AttributeError):
        job.threads = 4
