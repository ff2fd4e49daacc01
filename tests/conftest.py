import os

import pytest
import torch

THREADS = os.environ.get("LABELMETA_TEST_THREADS", "1")
torch.set_num_threads(int(THREADS))
# and the processes tests start (notebook kernels, CLI runs, benchmark scripts, killed runs): with the
# suite in two worker processes on two cores, a child on every core would slow both workers down
os.environ["OMP_NUM_THREADS"] = THREADS


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
