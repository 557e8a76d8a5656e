"""A checkpoint whose optimizer state does not load is never passed over in silence (issue 24,
also noticed: the resume silently started again at epoch 1)."""

import pytest

from models.card import ModelError
from models.synthetic import make_store
from models.train import checkpoint_dirs, load_train_config, train

SETS = ["run.backend=local", "run.cpus_per_worker=1", "model.options.blocks=2", "optim.lr_drop_epochs=[]"]


@pytest.fixture
def stopped_run(tmp_path, torch_one_thread):
    store = make_store(tmp_path / "s.zarr", n=32, chunk=8, shape=(32, 32))
    cfg = load_train_config("pmd-cnn/tiny", SETS + ["optim.epochs=3", "run.stop_after_epoch=2"])
    train(cfg, store.path, tmp_path / "run", progress=False)  # 2 of 3 epochs, then stopped
    return store, tmp_path / "run", load_train_config("pmd-cnn/tiny", SETS + ["optim.epochs=3"])


def test_a_damaged_last_checkpoint_is_named_and_the_one_before_used(stopped_run, capsys):
    store, run, cfg = stopped_run
    (epoch, _, last), = [c for c in checkpoint_dirs(run) if c[0] == 2]
    (last / "optimizer.pt").write_bytes(b"not a torch file")
    capsys.readouterr()
    res = train(cfg, store.path, run, resume=True, progress=False)
    assert res.start_epoch == 1 and res.epochs_done == 3  # from epoch 1's checkpoint, said so:
    assert "warning: resuming from epoch-0001; passed over 1 checkpoint(s) that do not load (epoch-0002:" \
        in capsys.readouterr().err


def test_no_loadable_checkpoint_is_an_error_not_a_fresh_start(stopped_run):
    store, run, cfg = stopped_run
    for _, _, d in checkpoint_dirs(run):
        (d / "optimizer.pt").write_bytes(b"not a torch file")
    with pytest.raises(ModelError, match=r"none of its 2 checkpoint\(s\) loads .*start again with --overwrite"):
        train(cfg, store.path, run, resume=True, progress=False)
