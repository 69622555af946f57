"""The PyTorch routes: eager fp32, bf16 weights, dynamic int8 (quantize_dynamic), and torch.compile."""
from __future__ import annotations

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
    elif precision == "bf16":
        # bf16 weights, not autocast: autocast converts every weight at every call, which made it slower than
        # fp32 at batch 1 and than bf16 weights at batch 32 on an AMX CPU (issue notes).
        module = copy.deepcopy(model).to(torch.bfloat16).eval()
        files = [_save_safetensors(module, workdir / "model.safetensors")]
    else:
        files = [_save_safetensors(model, workdir / "model.safetensors")]
        # dynamic=False: one static graph per input shape, the fastest for a fixed benchmark batch.
        module = torch.compile(model, dynamic=False) if runtime == "torch_compile" else model
    device = next(model.parameters()).device
    names = model_input_names(model)

    def run(inputs):
        with torch.inference_mode():
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
