"""Run by tests/test_distributed.py, alone or under torchrun: fit a tiny run, save its labels.

    python tests/ddp_fit.py OUT.pt LABELS STRATEGY
    python -m torch.distributed.run --standalone --nproc_per_node 2 tests/ddp_fit.py OUT.pt LABELS STRATEGY
"""
import os
import sys

import torch

from labelmeta import Config
from labelmeta.runner import fit_learner

torch.set_num_threads(1)
out, labels, strategy = sys.argv[1], sys.argv[2], sys.argv[3]
config = Config(dataset="digits", model="mlp", noise="symmetric", noise_rate=0.4, meta_per_class=10,
                meta_batch_size=50, batch_size=60, epochs=2, warmup_epochs=0, labels=labels, strategy=strategy,
                label_lr=0.5, progress=False)
learner, results = fit_learner(config)
if not torch.distributed.is_initialized() or torch.distributed.get_rank() == 0:
    torch.save({"labels": learner.labels.state_dict(), "model": learner.model.state_dict(),
                "steps": learner.num_steps, "accuracy": results.last_accuracy}, out)
if torch.distributed.is_initialized():
    # every process must hold the same labels: compare with rank 0's
    table = learner.labels.table()
    reference = table.clone()
    torch.distributed.broadcast(reference, 0)
    assert torch.equal(table, reference), "labels differ between processes"
    print(f"rank {torch.distributed.get_rank()}: trained, labels agree", file=sys.stderr, flush=True)
    # Both processes wait here, then leave without the C++ teardown of gloo, which can abort a
    # process at exit ("terminate called without an active exception", seen once in CI on 2
    # cores) after all the work under test is done and saved.
    torch.distributed.barrier()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
