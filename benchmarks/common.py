"""Helpers shared by the benchmark scripts: step timing, graph memory, machine description, output."""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

from labelmeta import make_model
from labelmeta.compare import mean_std
from labelmeta.plots import save_figure  # noqa: F401  (the scripts take it from here)

#: model name -> (input shape, classes)
SHAPES: Dict[str, Tuple[Tuple[int, ...], int]] = {"cnn1d-bn": ((40,), 10), "mlp": ((40,), 10),
                                                  "resnet18": ((3, 32, 32), 10), "wrn": ((3, 32, 32), 10)}


#: the CPU's vector extensions that decide which of torch's kernels run (and so the rounding of a float
#: figure): /proc/cpuinfo's names
VECTOR_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8")


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo's ``model name``; ``platform.processor()`` elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def cpu_flags() -> List[str]:
    """Those of :data:`VECTOR_FLAGS` the CPU has (empty where /proc/cpuinfo cannot be read)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    line = next((line for line in text.splitlines() if line.startswith(("flags", "Features"))), "")
    present = set(line.partition(":")[2].split())
    return [flag for flag in VECTOR_FLAGS if flag in present]


def machine_record(device: str = "cpu") -> dict:
    """What decides a figure's last bits on this machine, as a JSON-able dict: the CPU (model,
    architecture, vector extensions, the kernels torch dispatches to: ``ATEN_CPU_CAPABILITY`` can lower
    them), the torch build (version, CUDA or CPU build, oneDNN and MKL) and the torch threads; and the
    GPU for a ``cuda`` device."""
    record = dict(cpu=cpu_model(), arch=platform.machine(), flags=cpu_flags(),
                  capability=torch.backends.cpu.get_cpu_capability(), torch=torch.__version__,
                  build=f"CUDA {torch.version.cuda}" if torch.version.cuda else "CPU-only",
                  onednn=torch.backends.mkldnn.is_available(), mkl=torch.backends.mkl.is_available(),
                  threads=torch.get_num_threads())
    if device.startswith("cuda"):
        record["gpu"] = torch.cuda.get_device_name(device)
    return record


def describe_machine(record: dict) -> str:
    """One line of a :func:`machine_record` (one stored in a benchmark cell included)."""
    libraries = ", ".join(name for name, key in (("oneDNN", "onednn"), ("MKL", "mkl")) if record.get(key))
    gpu = f"{record['gpu']}; " if record.get("gpu") else ""
    return (f"{gpu}{record['cpu']} ({record['arch']}; {' '.join(record['flags']) or 'no AVX2'}; torch CPU kernels "
            f"{record['capability']}), torch {record['torch']} ({record['build']} build"
            f"{', ' + libraries if libraries else ''}), {record['threads']} torch thread(s)")


def machine(device: str) -> str:
    """One line naming where the figures were measured (:func:`machine_record`)."""
    return describe_machine(machine_record(device))


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)


def interleaved_times(steps: Dict[str, Callable[[], None]], repeats: int, warmup: int, device: str,
                      block: Dict[str, int] | None = None) -> Dict[str, List[float]]:
    """Seconds per step of every callable, measured round-robin so that drift hits all alike.

    ``block[name] = m`` times ``m`` consecutive calls as one sample and divides by ``m`` (for
    strategies that take a meta step every ``m`` steps). The first ``warmup`` rounds are dropped.
    """
    block = block or {}
    times: Dict[str, List[float]] = {name: [] for name in steps}
    for round_ in range(warmup + repeats):
        for name, step in steps.items():
            m = block.get(name, 1)
            sync(device)
            start = time.perf_counter()
            for _ in range(m):
                step()
            sync(device)
            if round_ >= warmup:
                times[name].append((time.perf_counter() - start) / m)
    return times


def median(values: List[float]) -> float:
    return statistics.median(values)


@contextmanager
def saved_tensor_bytes() -> Iterator[Dict[str, int]]:
    """Count the bytes autograd saves for backward inside the block (distinct storages).

    On the CPU this is the memory an unroll's graph holds, the part that grows with depth;
    ``result["bytes"]`` is filled when the block ends.
    """
    seen: Dict[int, int] = {}

    def pack(t: torch.Tensor):
        storage = t.untyped_storage()
        seen[storage.data_ptr()] = storage.nbytes()
        return t

    result: Dict[str, int] = {}
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        yield result
    result["bytes"] = sum(seen.values())


def peak_cpu_bytes(step: Callable[[], None]) -> int:
    """The most bytes of CPU tensors alive at once during one call of ``step``, above those alive before
    it (the profiler's memory timeline: every allocation and free, autograd's graph, a checkpointed
    unroll's recomputation and temporaries included; the allocator's caching is not)."""
    import tempfile
    import warnings

    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True, record_shapes=True, with_stack=True) as prof:
        step()
    with tempfile.TemporaryDirectory() as folder, warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # deprecated for CUDA's snapshots; the CPU has no other
        path = Path(folder) / "timeline.json"
        prof.export_memory_timeline(str(path), device="cpu")
        _, sizes = json.loads(path.read_text())
    totals = [sum(categories) for categories in sizes]
    return max(totals) - totals[0] if totals else 0


def peak_cuda_bytes(step: Callable[[], None], device: str) -> int:
    """``torch.cuda.max_memory_allocated`` during one call of ``step``, above what was allocated before."""
    sync(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    step()
    sync(device)
    return torch.cuda.max_memory_allocated(device) - before


def cost_row(method: str, runs, ce_seconds: float) -> dict:
    """One method's figures over its seeds' runs (``Results``): last and best accuracy, corrupted
    labels corrected, clean labels broken and wall time (each ``(mean, std)``), and its mean wall
    time as a multiple of ``ce_seconds`` (cross-entropy's)."""
    seconds = mean_std([r.wall_time for r in runs], 1.0)
    return dict(method=method, last=mean_std([r.last_accuracy for r in runs]),
                best=mean_std([r.best_accuracy for r in runs]), corrected=mean_std([r.corrected for r in runs]),
                broken=mean_std([r.clean_broken for r in runs]), seconds=seconds, time_ratio=seconds[0] / ce_seconds)


def accuracy_against_cost(rows: List[dict], path: Path, title: str, budget: float,
                          band: Optional[Tuple[float, float]] = None, labels: Optional[List[str]] = None) -> None:
    """Each row's last-epoch accuracy (``row["last"]``: mean, std) against its whole-run time as a
    multiple of cross-entropy's (``row["time_ratio"]``), log scale; ``budget`` a dotted line,
    ``band`` a shaded ``(mean, std)`` (a reference's), ``labels`` the legend (default: the methods)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5.5))
    for i, r in enumerate(rows):
        ax.errorbar(r["time_ratio"], r["last"][0], yerr=r["last"][1], marker="os^vD<>p*hPXd"[i % 13], ms=6, capsize=2,
                    ls="", color=f"C{i % 10}", label=(labels or [row["method"] for row in rows])[i])
    if band is not None:
        ax.axhspan(band[0] - band[1], band[0] + band[1], color="gray", alpha=0.15, label="reference ± 1 std")
    ax.axvline(budget, ls=":", c="gray")
    ax.set(xscale="log", xlabel="whole-run wall time / cross-entropy's", ylabel="last-epoch test accuracy (%)",
           title=title)
    times = matplotlib.ticker.FuncFormatter(lambda value, _: f"{value:g}×")
    ax.xaxis.set_major_formatter(times)
    ax.xaxis.set_minor_formatter(times)
    ax.tick_params(axis="x", which="minor", labelsize=7)
    ax.legend(fontsize=6, loc="lower right")
    save_figure(fig, path)


def write_outputs(out: Path, stem: str, report: str, data: dict) -> None:
    """``{stem}.md`` and ``{stem}.json`` under ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.md").write_text(report)
    (out / f"{stem}.json").write_text(json.dumps(data, indent=1))


def build(model_name: str, device: str, batch_size: int, num_samples: int = 4096):
    """The data and a factory of identically initialised (model, optimiser) pairs."""
    shape, classes = SHAPES[model_name]
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2 * batch_size, *shape, generator=g).to(device)
    y = torch.randint(0, classes, (2 * batch_size,), generator=g).to(device)
    targets = torch.randint(0, classes, (num_samples,), generator=g).to(device)
    idx = torch.randperm(num_samples, generator=g)[:batch_size].to(device)
    batch = (x[:batch_size], targets[idx], idx)
    meta = (x[batch_size:], y[batch_size:], torch.arange(batch_size, device=device))

    def model_and_optimizer():
        torch.manual_seed(0)
        model = make_model(model_name, shape, classes).to(device)
        return model, torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)

    return batch, meta, targets, classes, model_and_optimizer


def smoke(config):
    """The ``--smoke`` version of a benchmark's configuration: two epochs on a little data (what the tests run)."""
    small = dict(dataset_options=dict(num_samples=1000)) if config.dataset == "mnist1d" else {}
    return config.replace(epochs=2, warmup_epochs=1, meta_per_class=5, meta_batch_size=50, **small)


def warm_up(config):
    """A worker's throw-away run before cells whose wall times are figures: one small epoch that takes
    meta steps (no warm-up epochs), so that the first stored cell pays none of torch's start-up costs."""
    return smoke(config).replace(epochs=1, warmup_epochs=0)


def run_arguments(parser: argparse.ArgumentParser, seeds: Optional[Sequence[int]] = (0, 1, 2)) -> None:
    """The flags every benchmark shares: --seeds (unless ``seeds`` is None), --smoke, --out, --threads."""
    if seeds is not None:
        parser.add_argument("--seeds", type=int, nargs="+", default=list(seeds))
    parser.add_argument("--smoke", action="store_true", help="a configuration that runs in seconds: what the tests run")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 keeps timings comparable)")


def timing_arguments(parser: argparse.ArgumentParser, repeats: int) -> None:
    """The flags of the per-step timing benchmarks: --device, --batch-size, --repeats."""
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=repeats, help="timed rounds (each method once per round)")


def plain_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, batch) -> Callable[[], None]:
    """One ordinary training step (the reference every overhead is measured against)."""
    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(batch[0]), batch[1]).backward()
        optimizer.step()

    return step
