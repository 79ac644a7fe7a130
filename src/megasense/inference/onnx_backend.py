"""ONNX Runtime backend: an encoder exported once to ONNX (fp32, or per-channel dynamic int8), then run by
ONNX Runtime in place of the torch model.

The export traces the (LoRA-merged) model with pooling and head, dynamic batch and sequence axes, and the
same output dataclass comes back, so ``EncoderEngine`` and its length-sorted batches do not change. Files
are cached under ``$MEGASENSE_HOME/onnx/<key>/`` where the key hashes the weights, the model class and the
export recipe; each is written to a temporary file and renamed into place, so a crash leaves no half file.

int8 quantizes every MatMul weight per output channel (``per_channel=True``); per-tensor int8, the default
of ONNX Runtime's ``quantize_dynamic``, visibly distorts MiniLM's outputs. Activations are quantized per
batch at run time.
"""

from __future__ import annotations

import dataclasses
import hashlib
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from megasense.config.extras import MissingExtraError
from megasense.files.atomic import AtomicPath

ONNX_PRECISIONS = ("onnx", "onnx-int8")
RECIPE = "megasense-onnx-v1 opset17 int8=per-channel-qint8"
"""Part of the cache key: change it when the export or quantization recipe changes."""
FP32_FILE = "model.onnx"
INT8_FILE = "model.int8.onnx"
INPUTS = ("input_ids", "attention_mask")


class OnnxUnavailableError(MissingExtraError):
    """ONNX Runtime (or onnx, for the export) is not installed."""


def require_onnxruntime() -> Any:
    """The ``onnxruntime`` module, or an error that names the extra to install."""
    try:
        import onnxruntime
    except ImportError as exc:
        raise OnnxUnavailableError(
            f"precision onnx / onnx-int8 needs ONNX Runtime, which is not installed ({exc}); "
            "install it with: pip install 'megasense[onnx]'"
        ) from None
    return onnxruntime


def model_key(model: nn.Module) -> str:
    """A hex digest of the model's class, pooling, every tensor (name, dtype, shape, bytes) and ``RECIPE``."""
    digest = hashlib.sha256(f"{RECIPE}|{type(model).__qualname__}|{getattr(model, 'pooling', '')}".encode())
    for name, tensor in model.state_dict().items():
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"|{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()[:32]


class _Traced(nn.Module):
    """The model with its output dataclass flattened to the tuple of tensors it fills (no loss)."""

    def __init__(self, model: nn.Module, fields: tuple[str, ...]) -> None:
        super().__init__()
        self.model = model
        self.fields = fields

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.model(input_ids, attention_mask=attention_mask)
        return tuple(getattr(out, name) for name in self.fields)


def _example(model: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    # Row 1 is padded: the attention-mask branch is the one traced, and it is also exact for unpadded rows.
    vocab = model.config.vocab_size
    ids = (torch.arange(16).reshape(2, 8) * 37 + 5) % vocab
    mask = torch.ones(2, 8, dtype=torch.long)
    mask[1, 5:] = 0
    return ids, mask


def output_fields(model: nn.Module) -> tuple[type, tuple[str, ...]]:
    """The output dataclass of ``model`` and the names of the tensors it returns at inference."""
    with torch.inference_mode():
        out = model(*_example(model))
    names = tuple(f.name for f in dataclasses.fields(out) if f.name != "loss" and getattr(out, f.name) is not None)
    return type(out), names


def export_fp32(model: nn.Module, target: Path) -> Path:
    """``model`` as an fp32 ONNX graph at ``target`` (atomically), batch and sequence axes dynamic."""
    import importlib.util

    if importlib.util.find_spec("onnx") is None:
        raise OnnxUnavailableError("exporting to ONNX needs the onnx package; pip install 'megasense[onnx]'")
    _, fields = output_fields(model)
    traced = _Traced(model, fields).eval()
    axes = {name: {0: "batch", 1: "sequence"} for name in INPUTS}
    axes.update({name: {0: "batch"} for name in fields})

    with AtomicPath(target, suffix=".onnx") as path, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about the padding-mask branch (see _example)
        torch.onnx.export(
            traced,
            _example(model),
            str(path),
            input_names=list(INPUTS),
            output_names=list(fields),
            dynamic_axes=axes,
            opset_version=17,
            dynamo=False,  # the TorchScript exporter: no onnxscript dependency
        )
    return target


def quantize_int8(source: Path, target: Path) -> Path:
    """Per-channel dynamic int8 (signed weights) of the fp32 graph at ``source``, written atomically."""
    require_onnxruntime()
    import logging

    from onnxruntime.quantization import QuantType, quantize_dynamic

    quant_logger = logging.getLogger()  # quantize_dynamic logs a pre-processing hint at WARNING
    level = quant_logger.level
    quant_logger.setLevel(logging.ERROR)
    try:
        with AtomicPath(target, suffix=".onnx") as path:
            quantize_dynamic(str(source), str(path), per_channel=True, weight_type=QuantType.QInt8)
    finally:
        quant_logger.setLevel(level)
    return target


def cached_onnx(model: nn.Module, precision: str, home: Path | None = None) -> Path:
    """The ONNX file for ``model`` at ``precision`` (onnx or onnx-int8), exported on first use only."""
    if precision not in ONNX_PRECISIONS:
        raise ValueError(f"cached_onnx needs one of {', '.join(ONNX_PRECISIONS)}, not {precision!r}")
    if home is None:
        from megasense.zoo.embedded import megasense_home

        home = megasense_home()
    directory = Path(home) / "onnx" / model_key(model)
    fp32 = directory / FP32_FILE
    if not fp32.is_file():
        export_fp32(model, fp32)
    if precision == "onnx":
        return fp32
    int8 = directory / INT8_FILE
    if not int8.is_file():
        quantize_int8(fp32, int8)
    return int8


class OnnxModel:
    """Called like the torch model (``model(input_ids, attention_mask=...)``); runs an ONNX Runtime session
    and returns the same output dataclass. Runs on the CPU with torch's thread count."""

    def __init__(self, path: Path, output_type: type, fields: tuple[str, ...], threads: int | None = None) -> None:
        ort = require_onnxruntime()
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        self.path = Path(path)
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.output_type = output_type
        self.fields = fields

    def __call__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> Any:
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        feeds = {"input_ids": input_ids.cpu().long().numpy(), "attention_mask": attention_mask.cpu().long().numpy()}
        outputs = self.session.run(list(self.fields), feeds)
        return self.output_type(**{name: torch.from_numpy(value) for name, value in zip(self.fields, outputs)})


def onnx_model(model: nn.Module, precision: str, home: Path | None = None) -> OnnxModel:
    """``model`` exported (or read from the cache) and loaded into ONNX Runtime at ``precision``."""
    require_onnxruntime()
    model = model.eval()
    output_type, fields = output_fields(model)
    return OnnxModel(cached_onnx(model, precision, home), output_type, fields)
