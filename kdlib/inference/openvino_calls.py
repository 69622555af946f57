"""How the study calls a model compiled by OpenVINO's CPU plugin: one row in latency mode, a batch split over
streams. Light on purpose (numpy and the route settings): the exported-artifact loader uses it too."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from kdlib.inference import routes


def openvino_call(core, model_file: Path, precision: str, threads: int | None, outputs) -> Callable:
    """inputs -> {output name: array} on OpenVINO's CPU plugin. A batch of one row runs in latency mode, every
    thread on the one call. A batch of several rows is split into one part per thread, and the parts run at
    once on as many streams of one thread each (throughput mode, compiled at the first such batch), then are
    joined in order. Why: at batch 32 on two threads, latency mode ran in two states on the same graph, one
    far slower, while the streams, which share no data between threads within a call, ran as fast as its
    fast state and no slower (docs/benchmarks/openvino_streams.json)."""
    streams = threads if threads and threads > 1 else 1
    latency = core.compile_model(str(model_file), "CPU", routes.openvino_config(precision, threads))
    request = latency.create_infer_request()
    ports = [latency.output(name) for name in outputs]
    split: list = []  # the throughput-mode requests, made on first use

    def run(inputs):
        rows = len(next(iter(inputs.values())))
        if streams == 1 or rows < 2:
            result = request.infer(inputs)
            return {name: result[port] for name, port in zip(outputs, ports)}
        if not split:
            compiled = core.compile_model(str(model_file), "CPU", routes.openvino_config(precision, threads, streams))
            split.extend(compiled.create_infer_request() for _ in range(streams))
        parts = min(streams, rows)
        chunks = {k: np.array_split(v, parts) for k, v in inputs.items()}
        for i, req in enumerate(split[:parts]):
            req.start_async({k: c[i] for k, c in chunks.items()})
        for req in split[:parts]:
            req.wait()
        return {name: np.concatenate([req.get_tensor(name).data.copy() for req in split[:parts]])
                for name in outputs}

    return run
