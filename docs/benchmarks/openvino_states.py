"""Whether one OpenVINO int8 graph runs at one speed: the same graph timed in several fresh processes.

Run from the repository root, after the quick study (it reads 01's teacher and 03's L2_F384 student):
    python docs/benchmarks/openvino_states.py          # writes openvino_states.json beside this file
Each of PROCESSES fresh processes (this file run with --child) compiles 03's L2_F384 five times on OpenVINO
int8_static (random-token calibration: speed does not depend on the ranges), as 04's runs hold several
compiled models at once, and times the first at batch 32, 64 tokens, on the study's threads, three times:
before the PyTorch fp32 teacher has run, right after one teacher call, and a second later. It also records
how many CPU ticks the process's two busiest threads used while the slow or fast calls ran: a slow call with
both threads busy is not waiting for a core. Medians in ms per process and moment, with the machine.
"""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

PROCESSES, CALLS, COPIES = 8, 30, 5
REPORTS = Path("reports/quick")


def _thread_ticks() -> dict[str, int]:
    ticks = {}
    for tid in os.listdir(f"/proc/{os.getpid()}/task"):
        try:
            stat = open(f"/proc/{os.getpid()}/task/{tid}/stat").read()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        ticks[tid] = int(fields[11]) + int(fields[12])  # utime + stime
    return ticks


def child() -> dict:
    import torch
    from transformers import AutoModelForSequenceClassification

    from kdlib.inference import runtimes as rt

    threads = min(2, torch.get_num_threads())
    torch.set_num_threads(threads)
    teacher = AutoModelForSequenceClassification.from_pretrained(REPORTS / "01_teacher" / "model").eval()
    student = AutoModelForSequenceClassification.from_pretrained(REPORTS / "03_grid" / "models" / "L2_F384").eval()
    vocab = teacher.config.vocab_size
    calibration = [rt.random_batch(8, 64, vocab, rt.INPUT_NAMES) for _ in range(4)]
    work = Path(f"/tmp/kd-openvino-states-{os.getpid()}")
    reference = rt.prepare(teacher, "torch", "fp32", work / "teacher", threads)
    copies = [rt.prepare(student, "openvino", "int8_static", work / f"copy{i}", threads, calibration=calibration)
              for i in range(COPIES)]
    batch = rt.random_batch(32, 64, vocab, rt.INPUT_NAMES)

    def timed(model) -> dict:
        before, seconds = _thread_ticks(), []
        for _ in range(CALLS):
            start = time.perf_counter()
            model(batch)
            seconds.append(time.perf_counter() - start)
        after = _thread_ticks()
        busiest = sorted((after[t] - before.get(t, 0) for t in after), reverse=True)[:2]
        return {"median_ms": float(np.median(seconds) * 1e3), "busiest_thread_ticks": busiest,
                "wall_ticks": round(sum(seconds) * os.sysconf("SC_CLK_TCK"))}

    out = {"before_teacher": timed(copies[0])}
    reference(batch)
    out["right_after_teacher"] = timed(copies[0])
    time.sleep(1.0)
    out["a_second_later"] = timed(copies[0])
    return out


def main() -> None:
    from kdlib.inference import machine

    runs = []
    for i in range(PROCESSES):
        proc = subprocess.run([sys.executable, __file__, "--child"], capture_output=True, text=True, check=True)
        runs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        print(i, {k: round(v["median_ms"], 1) for k, v in runs[-1].items()}, flush=True)
    out = Path(__file__).with_name("openvino_states.json")
    out.write_text(json.dumps({"machine": machine.describe(), "processes": PROCESSES, "calls": CALLS,
                               "compiled_copies": COPIES, "batch_size": 32, "seq_len": 64, "runs": runs},
                              indent=1, default=str) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    if "--child" in sys.argv:
        print(json.dumps(child()))
    else:
        main()
