"""Training jobs that fail in the ways a real one can (imported by the spawned training process)."""

import os


def crash(*args, **kwargs):
    os._exit(9)  # as if the kernel killed the training process


def raise_error(*args, **kwargs):
    raise RuntimeError("out of memory while fitting")


def hang(*args, **kwargs):
    import time
    time.sleep(3600)  # as if the fit never converged
