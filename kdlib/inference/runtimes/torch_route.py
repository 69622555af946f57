"""The PyTorch routes: eager fp32, bf16 autocast, dynamic int8 (quantize_dynamic), and torch.compile."""
from __future__ import annotations

import contextlib
import copy
import warnings
from pathlib import Path

import torch
from safetensors.torch import save_model

from kdlib.inference.runtimes.base import Runner, _quiet, _tensor_outputs, example_inputs, model_input_names


def _save_safetensors(model, path: Path) -> Path:
    save_model(model, str(path))  # stores tied tensors once
    return path


def torch_route(model, runtime: str, precision: str, workdir: Path, threads: int, calibration=None) -> Runner:
    if precision == "int8":
        module = torch_dynamic_int8(model)
        files = [workdir / "model.int8.pt"]  # packed int8 weights: safetensors cannot hold them
        torch.save(module.state_dict(), files[0])
    else:
        files = [_save_safetensors(model, workdir / "model.safetensors")]
        # dynamic=False: one static graph per input shape, the fastest for a fixed benchmark batch.
        module = torch.compile(model, dynamic=False) if runtime == "torch_compile" else model
    device = next(model.parameters()).device
    names = model_input_names(model)

    def run(inputs):
        autocast = (torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bf16"
                    else contextlib.nullcontext())
        with torch.inference_mode(), autocast:
            out = module(**{k: torch.from_numpy(v).to(device) for k, v in inputs.items()})
        # float() first: numpy has no bf16.
        return {k: v.float().cpu().numpy() for k, v in _tensor_outputs(out).items()}

    with torch.inference_mode():  # output names from the eager model: compiling here would be wasted
        outputs = tuple(_tensor_outputs(model(**{k: torch.from_numpy(v).to(device)
                                                 for k, v in example_inputs(model).items()})))
    return Runner(f"{runtime}/{precision}", runtime, precision, run, files, names, outputs, None, torch.__version__)


def torch_dynamic_int8(model):
    """A copy of `model` with every nn.Linear replaced by torch's dynamically quantised int8 Linear."""


    with _quiet("torch"), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization announces its move to torchao
        return torch.ao.quantization.quantize_dynamic(copy.deepcopy(model).eval(), {torch.nn.Linear},
                                                      dtype=torch.qint8)
