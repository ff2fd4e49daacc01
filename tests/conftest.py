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


#: the suite's longest tests (seconds each on 2 quiet cores, `pytest --durations`, issue 37), longest first
LONGEST = (
    "test_distributed.py::test_killed_and_resumed_under_two_processes_is_bit_exact",  # 65
    "test_distributed.py::test_two_processes_match_one",  # 48, 37
    "test_benchmarks.py::test_unroll_depth_smoke",  # 35
    "test_benchmarks.py::test_clean_labels_smoke",  # 30
    "test_benchmarks.py::test_noisy_labels_smoke_and_resume",  # 26
    "test_benchmarks.py::test_machine_variation_smoke",  # 24
    "test_resume.py::test_sigkill_after_a_checkpoint_then_resume_is_bit_exact",  # 11-19
    "test_benchmarks.py::test_default_candidates_smoke",  # 17
    "test_distributed.py::test_the_same_batch_on_every_process_is_refused",  # 16
    "test_benchmarks.py",  # the other smokes: 5-15
    "test_notebooks.py::test_notebook_runs",  # 9-13
    "test_cli.py::test_cifar_preset_end_to_end_on_a_tiny_on_disk_cifar",  # 12
    "test_extending.py::test_the_components_run_from_the_command_line_as_they_do_in_fit",  # 12
)


def pytest_collection_modifyitems(config, items):
    """The longest tests first, dealt alternately to the front of each half of the run: pytest-xdist's
    worksteal gives each of its two workers one contiguous half, and a long test left for the end runs
    while the other worker idles (the distributed tests at the end cost the suite up to two minutes)."""
    def rank(item) -> int:
        return next((i for i, name in enumerate(LONGEST) if name in item.nodeid), len(LONGEST))

    longest = sorted((item for item in items if rank(item) < len(LONGEST)), key=rank)
    rest = [item for item in items if rank(item) == len(LONGEST)]
    first, second = longest[0::2], longest[1::2]
    half = max(0, len(items) // 2 - len(first))
    items[:] = first + rest[:half] + second + rest[half:]
