import os

import pytest
import torch

torch.set_num_threads(int(os.environ.get("ANNORM_TEST_THREADS", "1")))


@pytest.fixture(autouse=True, scope="session")
def _own_cache(tmp_path_factory):
    """Tests never read or write the user's cache (~/.cache/annorm): one fresh folder per session."""
    previous = os.environ.get("ANNORM_CACHE")
    os.environ["ANNORM_CACHE"] = str(tmp_path_factory.mktemp("annorm-cache"))
    yield
    if previous is None:
        os.environ.pop("ANNORM_CACHE", None)
    else:
        os.environ["ANNORM_CACHE"] = previous


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
