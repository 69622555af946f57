"""Independent runs spread over worker processes, one torch thread each.

On 2 cores, a small model trained with 2 threads runs far less than twice as fast as with 1 (its matrices
are too small to split well), while two runs of 1 thread each, side by side, each keep about their
single-thread speed: two workers finish a list of runs sooner (measured: docs/benchmarks/
thread_efficiency.json). A run's numbers depend on its thread count (the order of a sum), so every job runs
with one thread, in a worker or here: its numbers do not depend on how many workers there are.
"""
from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
from concurrent.futures import ProcessPoolExecutor

import torch
from tqdm.auto import tqdm

# The torch threads of every job: recorded in the key of each run trained through `map_jobs`.
JOB_THREADS = 1


@contextlib.contextmanager
def torch_threads(n: int):
    """Run a block with `n` torch threads, restoring the caller's afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _start_worker() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # an interrupt is the caller's to handle (map_jobs stops us)
    torch.set_num_threads(JOB_THREADS)


_POOL: dict = {}


def _pool(workers: int) -> ProcessPoolExecutor:
    """`workers` worker processes, started once and kept while the caller's settings stay (a worker pays its
    imports, ~5 s, once for all the map_jobs calls of a step). A worker reads its folders from the
    environment it started with, so another working directory or KD_/HF_ setting starts new workers."""
    settings = (workers, os.getcwd(), tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith(("KD_", "HF_")))))
    if settings not in _POOL:
        _shutdown()
        # spawn, not fork: a forked child of a process whose OpenMP threads ran (or of a notebook kernel) can hang
        _POOL[settings] = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                              initializer=_start_worker)
    return _POOL[settings]


def _shutdown(wait: bool = True) -> None:
    for pool in _POOL.values():
        pool.shutdown(wait=wait, cancel_futures=True)
    _POOL.clear()


def _run_job(fn, shared: dict, job: dict):
    return fn(**shared, **job)


def map_jobs(fn, jobs: list[dict], shared: dict, workers: int, desc: str | None = None) -> list:
    """[fn(**shared, **job) for job in jobs], spread over `workers` processes, in order. Every job runs with
    JOB_THREADS torch threads, in a worker or (workers <= 1) here. Workers take the jobs in the order given:
    put the longest first. fn must be importable (module level); tensors in `shared` travel through shared
    memory, not copies. Under torchrun every job runs here."""

    # A torchrun rank (WORLD_SIZE > 1) runs its jobs here, in turn: every rank takes part in each job's
    # collectives, in the same order, and a worker it started would join the job as a rank of its own.
    if workers <= 1 or len(jobs) <= 1 or int(os.environ.get("WORLD_SIZE", "1")) > 1:
        with torch_threads(JOB_THREADS):
            return [fn(**shared, **job) for job in tqdm(jobs, desc=desc, disable=desc is None, mininterval=5)]
    pool = _pool(workers)
    try:
        results = pool.map(_run_job, *zip(*[(fn, shared, job) for job in jobs]))
        return list(tqdm(results, total=len(jobs), desc=desc, disable=desc is None, mininterval=5))
    except BaseException:  # an interrupt or a failed job: stop the workers rather than let them run on
        _shutdown(wait=False)
        raise
