"""Weight formats for the packed decoder's matrices, and the kernels that multiply by them.

``PackedLinear`` holds one matrix in ``fp32``, ``bf16``, ``int8`` (one scale per output row) or ``int4`` (groups of
32 inputs with a scale and a zero each, GGUF's Q4_1 layout) and picks, per call, the fastest kernel for the number
of rows: torch's weight-only int4/int8 CPU kernels for a few rows, a prepacked bf16 copy of the same (dequantised)
weights for prefills and wide batches. The measurements behind each switch are stated where it is set.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

WEIGHT_FORMATS = ("fp32", "bf16", "int8", "int4")
INT4_GROUP = 32


def _fitting_format(fmt: str, N: int, K: int) -> str:
    """``fmt``, or the next wider format where torch's kernels refuse the shape: int4 packs N in 16s and K in
    groups of 32; the int8 kernel crashes on K not a multiple of 8 (seen with K=37)."""
    if fmt == "int4" and (K % INT4_GROUP or N % 16):
        fmt = "int8"
    if fmt == "int8" and K % 8:
        fmt = "bf16"
    return fmt


DENSE_FROM_ROWS = 16
"""Rows (tokens x sequences in one call) from which a quantised matrix multiplies through its dense bf16 copy.

torch's CPU int4/int8 weight-only kernels dequantise the weights again for every few rows, so their cost grows
with the rows, while a prepacked bf16 matmul (oneDNN, AVX-512 BF16) reads 4x the bytes of int4 but costs little
more for 64 rows than for one. Measured per call on a 2-core AVX-512 CPU, SmolLM2-135M's four layer matrices
streamed from memory, summed over its 30 layers: int4 3.5 ms vs bf16 9.0 at 1 row, 5.8 vs 8.3 at 4, 10.7 vs 10.2
at 8, 20.7 vs 13.4 at 16 and 50 vs 26 at 40; in whole decode steps at batch 8 the int4 kernels still won (24.5 vs
28.0 ms a step), so the switch is at 16. A prefill is hundreds of rows: 8 chat prompts prefill in 230 ms instead
of 500."""

DENSE_HEAD_FROM_ROWS = 2
"""The same for the output layer (vocabulary x hidden, int8 under ``int4``). For SmolLM2's 49152 x 576, measured
per call: the int8 kernel and the bf16 copy both take about 2 ms at 1 and 2 rows; at 4 rows the int8 kernel is
about 2x slower and at 8 rows 3x or more (its cost grows with the rows, the copy's hardly)."""


def _prepack(weight: torch.Tensor):
    """oneDNN's own blocked copy of a bf16 ``weight`` (N, K) for ``_linear_pointwise``, or None where oneDNN
    cannot (not a CPU, no bf16 support, an older torch). ``F.linear`` would re-lay the weight out on every call,
    which at a few rows costs more than the multiplication (measured: 1.5-4.5x slower at 1-8 rows); inductor packs
    its frozen bf16 linears the same way."""
    ops = getattr(torch.ops, "mkldnn", None)
    if weight.device.type != "cpu" or weight.dtype != torch.bfloat16 or not torch.backends.mkldnn.is_available():
        return None
    try:
        if not ops._is_mkldnn_bf16_supported():
            return None
        return ops._reorder_linear_weight(weight)
    except (AttributeError, RuntimeError):  # the private op moved or refused: the plain matmul still works
        return None


class PackedLinear:
    """``y = x @ W.T + b`` for 2-D ``x`` (M, K), with ``W`` (N, K) stored in one of ``WEIGHT_FORMATS``.

    A quantised matrix also keeps a dense bf16 copy of its own dequantised values (the same weights, not the
    original ones), which calls of ``dense_from`` rows or more multiply through (see ``DENSE_FROM_ROWS``); so a
    prefill and a wide batch's steps run the quantised model at bf16 matmul speed. bf16 copies are prepacked
    for oneDNN where it can."""

    def __init__(
        self,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
        fmt: str,
        dense_from: int = DENSE_FROM_ROWS,
        keep_rows: bool = False,
    ) -> None:
        """``keep_rows``: keep what ``rows`` needs (the plain bf16 weights beside a prepacked copy)."""
        weight = weight.float()
        N, K = weight.shape
        self.shape = (N, K)
        self.format = _fitting_format(fmt, N, K)
        act = torch.float32 if fmt == "fp32" else torch.bfloat16
        self.bias = None if bias is None else bias.to(act)
        self.dense_from = dense_from
        if self.format in ("fp32", "bf16"):
            dense, self.weight = weight, None
        elif self.format == "int8":
            # symmetric per output row: scale = max|w| / 127
            scale = weight.abs().amax(dim=1).clamp(min=1e-12) / 127.0  # (N,)
            self.weight = (weight / scale[:, None]).round().clamp(-127, 127).to(torch.int8).contiguous()
            self.scale = scale.to(act)
            dense = self.weight.float() * self.scale.float()[:, None]  # what the kernel multiplies by
        else:  # int4, asymmetric per group of 32 inputs: w = q * scale + min, q in 0..15
            groups = weight.view(N, K // INT4_GROUP, INT4_GROUP)
            low, high = groups.amin(-1), groups.amax(-1)  # (N, K/G)
            scale = ((high - low) / 15).clamp(min=1e-12)
            q = ((groups - low[..., None]) / scale[..., None]).round().clamp(0, 15).to(torch.int32).view(N, K)
            self.weight = torch._convert_weight_to_int4pack_for_cpu(q, 1)
            # torch's kernel computes (q - 8) * scale + zero, so zero = min + 8 * scale; layout (K/G, N, 2)
            self.scale = torch.stack([scale, low + 8 * scale], dim=-1).transpose(0, 1).contiguous().to(act)
            # the kernel's own dequantisation, from the scale and zero as stored (rounded to bf16)
            step, zero = self.scale.float().unbind(-1)  # (K/G, N) each
            dense = (q.view(N, K // INT4_GROUP, INT4_GROUP) - 8) * step.T[..., None] + zero.T[..., None]
        dense = dense.reshape(N, K).to(act).contiguous()
        self.packed = _prepack(dense)
        # one copy, oneDNN's or the plain one, unless rows are to be read from a bf16 matrix
        self.dense = dense if self.packed is None or (keep_rows and self.weight is None) else None

    def rows(self, index: torch.Tensor) -> torch.Tensor | None:
        """Rows ``index`` (any shape) of the weights as the kernels multiply by, in fp32: (*index.shape, K)."""
        if self.format == "int8":
            return self.weight[index].float() * self.scale.float()[index][..., None]
        if self.dense is not None:
            return self.dense[index].float()
        return None  # int4's packed layout has no rows to read

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.weight is None or x.shape[0] >= self.dense_from:
            if self.packed is not None:
                return torch.ops.mkldnn._linear_pointwise(x, self.packed, self.bias, "none", [], "")
            return F.linear(x, self.dense, self.bias)
        if self.format == "int8":
            y = torch._weight_int8pack_mm(x, self.weight, self.scale)
        else:
            y = torch._weight_int4pack_mm_for_cpu(x, self.weight, INT4_GROUP, self.scale)
        return y if self.bias is None else y + self.bias

    def nbytes(self) -> int:
        """Bytes of weights a one-row call reads: the quantised ones where there are (the dense copy serves
        calls of ``dense_from`` rows or more)."""
        if self.weight is None:
            return self._dense_nbytes()
        return self.weight.nbytes + self.scale.nbytes

    def _dense_nbytes(self) -> int:
        return self.shape[0] * self.shape[1] * (4 if self.format == "fp32" else 2)

    def held_nbytes(self) -> int:
        """Bytes this matrix keeps in memory: quantised weights, their dense copy, plain rows kept beside a
        prepacked copy."""
        held = 0 if self.weight is None else self.weight.nbytes + self.scale.nbytes
        held += self._dense_nbytes() if self.packed is not None else 0
        return held + (self.dense.nbytes if self.dense is not None else 0)
