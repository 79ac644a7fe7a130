"""Inference precision: run an encoder in fp32, under bf16 autocast, or with int8 dynamic-quantized linears.

``"auto"`` picks the fastest path measured to stay within 0.5 point of fp32 accuracy on the validation
sets (numbers in ``benchmarks/predict_throughput.py``'s notes): bf16 autocast where the CPU has native
bf16 matrix units (AMX or AVX512-BF16; 2.7x over fp32 end to end on a 2-core Xeon with AMX) and fp32
elsewhere -- on CPUs without them bf16 emulation is ~8x *slower*. The int8 paths keep the accuracy
budget too (-0.3 to +0.5 point) and run ~2.2x fp32's model time on AMX hardware, but on an AVX2-only
CPU torch's int8 gained only ~1.25x, so ``auto`` does not choose them; ask for them by name.

int8 uses torch's own ``quantize_dynamic`` with the per-channel qconfig (per-tensor int8, the default of
torch and ONNX Runtime, visibly distorts MiniLM); it quantizes a copy of the merged (base+LoRA) model in
memory and writes nothing to disk. ``onnx`` and ``onnx-int8`` run the model in ONNX Runtime instead (see
``inference.onnx_backend``): exported once, cached under ``$MEGASENSE_HOME/onnx``, needs ``megasense[onnx]``.
"""

from __future__ import annotations

import copy
import functools
import warnings

import torch
from torch import nn

from megasense.errors import MegasenseInputError

PRECISIONS = ("auto", "fp32", "bf16", "int8", "onnx", "onnx-int8")
CPU_ONLY = ("int8", "onnx", "onnx-int8")


def check_precision(precision: str) -> str:
    """``precision`` itself, or a ``MegasenseInputError`` that lists the valid choices."""
    if precision not in PRECISIONS:
        raise MegasenseInputError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    return precision


@functools.cache
def bf16_is_fast() -> bool:
    """True on CPUs with native bf16 matrix instructions (AMX or AVX512-BF16), where autocast pays off."""
    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            flags = handle.read()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def resolve_precision(precision: str, device: torch.device | str = "cpu") -> str:
    """The concrete precision (fp32, bf16, int8, onnx or onnx-int8) that ``precision`` means on ``device``."""
    check_precision(precision)
    if precision in CPU_ONLY and torch.device(device).type != "cpu":
        raise MegasenseInputError(f"precision {precision!r} runs on the CPU only, not on {device}; use bf16 or fp32")
    if precision.startswith("onnx"):
        from megasense.inference.onnx_backend import require_onnxruntime

        require_onnxruntime()
    if precision != "auto":
        return precision
    return "bf16" if bf16_is_fast() else "fp32"


class Autocast(nn.Module):
    """Runs the wrapped model under bf16 autocast (weights stay fp32; logits come back as fp32)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None):
        with torch.autocast(input_ids.device.type, dtype=torch.bfloat16):
            return self.model(input_ids, attention_mask=attention_mask)


def quantize_int8(model: nn.Module) -> nn.Module:
    """A copy of ``model`` whose ``nn.Linear`` layers hold per-output-channel int8 weights (activations
    quantized per batch at run time); the original is left untouched."""
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    with warnings.catch_warnings():
        # torch.ao.quantization warns it will move to torchao; the eager API still works in this torch.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        return quantize_dynamic(
            copy.deepcopy(model).eval(), {nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8
        )


def with_precision(model: nn.Module, precision: str) -> nn.Module:
    """``model`` prepared to run at a concrete precision (see ``resolve_precision``)."""
    if precision == "fp32":
        return model
    if precision == "bf16":
        return Autocast(model)
    if precision == "int8":
        return quantize_int8(model)
    if precision in ("onnx", "onnx-int8"):
        from megasense.inference.onnx_backend import onnx_model

        return onnx_model(model, precision)
    raise ValueError(f"with_precision needs fp32, bf16, int8, onnx or onnx-int8, not {precision!r}")
