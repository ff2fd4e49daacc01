"""Run by tests/test_resume.py: the ``labelmeta`` command, killed right after a chosen checkpoint.

    python tests/killed_fit.py EPOCHS STEPS train ARGS...

Runs ``labelmeta ARGS`` (``labelmeta.cli.main``) with ``labelmeta.checkpoint.save`` wrapped: right
after the real save of the checkpoint written when ``EPOCHS`` epochs and ``STEPS`` further steps
are done (``STEPS`` 0: the checkpoint at the end of epoch ``EPOCHS``), the process sends itself
SIGKILL, so nothing is flushed or cleaned up. The save is real and so is the kill, at a known point
instead of wherever a timer lands; nothing else is replaced. If that checkpoint is never written,
the run finishes normally (the test then sees exit status 0 instead of -SIGKILL).
"""
import inspect
import os
import signal
import sys

from labelmeta import checkpoint
from labelmeta.cli import main

epochs, steps = int(sys.argv[1]), int(sys.argv[2])
real_save = checkpoint.save


def save(*args, **kwargs):
    real_save(*args, **kwargs)
    state = inspect.signature(real_save).bind(*args, **kwargs).arguments["state"]
    if (state.epoch, state.step_in_epoch) == (epochs, steps):
        os.kill(os.getpid(), signal.SIGKILL)


checkpoint.save = save  # the runner calls ``checkpoint.save`` through the module
sys.exit(main(sys.argv[3:]))
