"""Run by tests/test_distributed.py, alone or under torchrun: fit tiny runs, save what they learned.

    python tests/ddp_fit.py OUT.pt LABELS/STRATEGY...
    python -m torch.distributed.run --standalone --nproc_per_node 2 tests/ddp_fit.py OUT.pt LABELS/STRATEGY...

Each ``LABELS/STRATEGY`` (e.g. ``per-class/unrolled``, ``one-hot/reweight``) is one run of
``fit_learner`` on digits, one after the other in the same process group; rank 0 saves, per run,
the labels, the model, the step count and the epoch records.
"""
import dataclasses
import os
import sys

import torch

from labelmeta import Config
from labelmeta.runner import fit_learner

torch.set_num_threads(1)
out, specs = sys.argv[1], sys.argv[2:]
saved = {}
for spec in specs:
    labels, strategy = spec.split("/", 1)
    # 1 338 training samples in 22 global batches of 61, the last of 57 (shards of 30 and 31, then 28
    # and 29 samples); 100 meta samples in batches of 45, 45 and 10 (shards of 22 and 23, 5 and 5)
    config = Config(dataset="digits", model="mlp", noise="symmetric", noise_rate=0.4, meta_per_class=10,
                    meta_batch_size=45, batch_size=61, epochs=1, warmup_epochs=0, labels=labels, strategy=strategy,
                    label_lr=0.5, progress=False)
    learner, results = fit_learner(config)
    saved[spec] = {"labels": learner.labels.state_dict(), "model": learner.model.state_dict(),
                   "steps": learner.num_steps, "history": [dataclasses.asdict(h) for h in results.history]}
    if torch.distributed.is_initialized():
        # every process must hold the same labels and model: compare with rank 0's
        for name, value in [*learner.labels.state_dict().items(), *learner.model.state_dict().items()]:
            reference = value.clone()
            torch.distributed.broadcast(reference, 0)
            assert torch.equal(value, reference), f"{spec}: {name} differs between processes"
if not torch.distributed.is_initialized() or torch.distributed.get_rank() == 0:
    torch.save(saved, out)
if torch.distributed.is_initialized():
    print(f"rank {torch.distributed.get_rank()}: trained, labels agree", file=sys.stderr, flush=True)
    # Both processes wait here, then leave without the C++ teardown of gloo, which can abort a
    # process at exit ("terminate called without an active exception", seen once in CI on 2
    # cores) after all the work under test is done and saved.
    torch.distributed.barrier()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
