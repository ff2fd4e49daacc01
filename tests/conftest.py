import os

import pytest
import torch

torch.set_num_threads(int(os.environ.get("LABELMETA_TEST_THREADS", "1")))


@pytest.fixture
def float64():
    """Run the test with float64 as the default dtype."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    """Keep generated datasets in one per-session temporary folder."""
    monkeypatch.setenv("LABELMETA_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
