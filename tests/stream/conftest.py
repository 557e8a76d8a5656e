"""The stream tests' model: one seeded, untrained PMD CNN for the whole session (never modified)."""

import pytest

from models.testing import make_stream_model


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory):
    return make_stream_model(tmp_path_factory.mktemp("model"))
