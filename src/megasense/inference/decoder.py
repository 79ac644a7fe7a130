"""A decode-only copy of a GPT model, packed for speed: fused weights, a static KV cache, few ops per token.

Decoding one token at small batch reads every weight once, so its speed is set by the bytes read per token
and by how many small tensor operations each token costs, not by arithmetic. ``PackedDecoder`` takes a
``GPTModel`` and keeps, per layer, one fused query/key/value matrix in ``[queries; keys; values]`` order,
one fused gate/up matrix, and the output projections, in the chosen weight format:

- ``fp32``: the model's own weights, fused (same values; sums may round in another order);
- ``bf16``: half the bytes, bf16 activations;
- ``int8``: weight-only int8 with one scale per output row (``torch._weight_int8pack_mm``), bf16 activations;
- ``int4``: weight-only 4-bit in groups of 32 along the input with a scale and a zero per group
  (``torch._weight_int4pack_mm_for_cpu``, the layout of GGUF's Q4_1), int8 for the output layer (the GGUF's
  own is 8-bit), bf16 activations.

A matrix whose shape a kernel refuses falls back to the next wider format (int4 -> int8 -> bf16).

Which kernel runs depends on the rows of a call (tokens x sequences): the int4/int8 kernels are the fastest for a
few rows, but their cost grows with the rows, so a quantised matrix also keeps a bf16 copy of its own dequantised
values that prefills and wide batches multiply through: the same weights, faster (``megasense.inference.linear``,
which states the measurements). bf16 matrices are prepacked once for oneDNN. The output layer's few leading logits
per row are recomputed in fp32, so bf16 rounding cannot tie the top candidates.

The KV cache is preallocated as one tensor for all layers, written in place at one column per step; a step
attends over the columns written so far (a view), not the whole preallocated length; the attention mask and
rotary tables are built once per batch and sliced per step (views, no allocation).
The engine (``megasense.inference.generation``) drives it through ``new_session``; it sees only ids.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from megasense.inference.linear import DENSE_HEAD_FROM_ROWS, WEIGHT_FORMATS, PackedLinear
from megasense.models import GPTModel
from megasense.models.layers import activation_fn

REFINED_LOGITS = 8
"""Logits per row that the packed decoder recomputes in fp32 after its bf16 output layer (see ``_logits``)."""


def _dense_weight(module: nn.Linear) -> tuple[torch.Tensor, torch.Tensor | None]:
    """A linear layer's effective weight (LoRA adapters folded in) and bias, detached."""
    weight = module.weight.detach()
    delta = getattr(module, "delta_weight", None)  # a LoRALinear: fold its adapter in
    if delta is not None:
        weight = weight + delta().to(weight.dtype)
    return weight, None if module.bias is None else module.bias.detach()


@dataclass
class _Layer:
    norm1: tuple[torch.Tensor | None, torch.Tensor | None]
    qkv: PackedLinear
    out: PackedLinear
    norm2: tuple[torch.Tensor | None, torch.Tensor | None]
    up: PackedLinear  # SwiGLU: [gate; up] fused, (2F, H)
    down: PackedLinear


def _norm_params(norm: nn.Module, dtype: torch.dtype) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    weight = None if norm.weight is None else norm.weight.detach().to(dtype)
    bias = getattr(norm, "bias", None)
    return weight, None if bias is None else bias.detach().to(dtype)


class PackedDecoder:
    """Decode-only copy of ``model`` in weight format ``fmt``; the model itself is left untouched."""

    def __init__(self, model: GPTModel, fmt: str = "bf16") -> None:
        if fmt not in WEIGHT_FORMATS:
            raise ValueError(f"weight format {fmt!r}: expected one of {', '.join(WEIGHT_FORMATS)}")
        cfg = model.config
        self.format, self.config = fmt, cfg
        self.dtype = torch.float32 if fmt == "fp32" else torch.bfloat16
        self.vocab_size = cfg.vocab_size
        self.heads, self.groups, self.head_dim = cfg.num_attention_heads, cfg.query_groups, cfg.head_dim
        self.rms = cfg.normalization == "rmsnorm"
        self.eps = cfg.norm_eps
        self.swiglu = cfg.activation == "swiglu"
        self.act = None if self.swiglu else activation_fn(cfg.activation)
        emb = model.embedding
        self.word = emb.word_embeddings.weight.detach().to(self.dtype)
        self.positions = None if emb.position_embeddings is None else emb.position_embeddings.weight.detach()
        if self.positions is not None:
            self.positions = self.positions.to(self.dtype)
        self.embed_norm = None if emb.layernorm is None else _norm_params(emb.layernorm, self.dtype)
        self.rotary = None
        if model.rotary is not None:
            self.rotary = (model.rotary.cos.to(self.dtype), model.rotary.sin.to(self.dtype))  # (max_pos, D)
        self.layers = [self._pack_layer(layer, fmt) for layer in model.layers]
        self.final_norm = _norm_params(model.final_layernorm, self.dtype)
        head_weight, head_bias = _dense_weight(model.output_layer)
        # only the real vocabulary: Megatron's padding rows would be computed and thrown away
        head_fmt = "int8" if fmt == "int4" else fmt
        self.head = PackedLinear(
            head_weight[: self.vocab_size], head_bias, head_fmt, DENSE_HEAD_FROM_ROWS, keep_rows=True
        )

    def _pack_layer(self, layer: nn.Module, fmt: str) -> _Layer:
        attn, mlp = layer.self_attention, layer.mlp
        qkv, qkv_bias = _dense_weight(attn.linear_qkv)
        G, per, D = self.groups, attn.q_per_group, self.head_dim
        # Megatron rows [groups, q_per_group + 2, D] -> [all queries; all keys; all values], so one split
        # separates them and the queries stay in head order (head h belongs to group h // q_per_group)
        order = torch.arange(G * (per + 2) * D).view(G, per + 2, D)
        order = torch.cat([order[:, :per].flatten(), order[:, per].flatten(), order[:, per + 1].flatten()])
        qkv = qkv[order]
        qkv_bias = None if qkv_bias is None else qkv_bias[order]
        if self.swiglu:
            gate, gate_bias = _dense_weight(mlp.dense_h_to_4h_gate)
            up, up_bias = _dense_weight(mlp.dense_h_to_4h)
            up_w = torch.cat([gate, up])
            up_b = None if up_bias is None else torch.cat([gate_bias, up_bias])
        else:
            up_w, up_b = _dense_weight(mlp.dense_h_to_4h)
        if not layer.pre_norm:
            raise ValueError("the packed decoder runs pre-norm decoders (GPT, Llama); this layer is post-norm")
        return _Layer(
            norm1=_norm_params(layer.input_layernorm, self.dtype),
            qkv=PackedLinear(qkv, qkv_bias, fmt),
            out=PackedLinear(*_dense_weight(attn.dense), fmt),
            norm2=_norm_params(layer.post_attention_layernorm, self.dtype),
            up=PackedLinear(up_w, up_b, fmt),
            down=PackedLinear(*_dense_weight(mlp.dense_4h_to_h), fmt),
        )

    def _linears(self) -> list[PackedLinear]:
        return [m for layer in self.layers for m in (layer.qkv, layer.out, layer.up, layer.down)] + [self.head]

    def nbytes(self) -> int:
        """Bytes of weights read per decoded token at batch 1 (what bounds the speed at small batch)."""
        return sum(m.nbytes() for m in self._linears())

    def held_nbytes(self) -> int:
        """Bytes the matrices keep in memory, dense copies for wide calls included."""
        return sum(m.held_nbytes() for m in self._linears())

    def new_session(self, batch_size: int, max_length: int, mask: torch.Tensor | None) -> DecodeSession:
        return DecodeSession(self, batch_size, max_length, mask)

    # ------------------------------------------------------------------------------------------
    def _norm(self, x: torch.Tensor, params) -> torch.Tensor:
        weight, bias = params
        if self.rms:
            return F.rms_norm(x, (x.shape[-1],), weight, self.eps)
        return F.layer_norm(x, (x.shape[-1],), weight, bias, self.eps)

    def _embed(self, ids: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        x = F.embedding(ids, self.word)
        if self.positions is not None:
            x = x + F.embedding(positions, self.positions)
        return x if self.embed_norm is None else self._norm(x, self.embed_norm)

    def forward(self, session: DecodeSession, ids: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """Run ``ids`` (B, T) at ``positions`` (B, T) through every layer, appending to the session's cache;
        return the last position's logits (B, V) in fp32."""
        if ids.shape[1] == 1:
            return self.decode(session, ids[:, 0], positions[:, 0])
        x = self._embed(ids, positions)  # (B, T, H)
        rotary = None
        if self.rotary is not None:
            rotary = (self.rotary[0][positions][:, :, None], self.rotary[1][positions][:, :, None])  # (B, T, 1, D)
        start, end = session.length, session.length + ids.shape[1]
        mask = session.mask_for(start, end)
        for i, layer in enumerate(self.layers):
            x = self._layer(layer, x, rotary, session.cache[i], mask, start, end)
        session.length = end
        x = self._norm(x[:, -1], self.final_norm)  # (B, H)
        return self._logits(x)  # (B, V)

    def decode(self, session: DecodeSession, ids: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """One new token per row: ``ids`` (B,) at ``positions`` (B,) -> logits (B, V) in fp32.

        Per-step work is shared by the layers: the rotary tables are gathered once (rotate-half as a roll with
        the sign folded into the sine, so each layer rotates every query and key head in three ops), and one
        padding mask serves them all. Attention reads only the cache columns written so far (a view), not the
        whole preallocated length."""
        x = self._embed(ids, positions)  # (B, H)
        rotation = None
        if self.rotary is not None:
            cos, sin = self.rotary[0][positions], self.rotary[1][positions]  # (B, D)
            rotation = (cos[:, None], (sin * self._half_sign)[:, None])  # (B, 1, D) each
        end = session.length + 1
        column = session.columns[end - 1 : end]  # (1,) where this step's keys go
        mask = session.mask_for(end - 1, end)  # (B, 1, 1, end) or None
        for layer, keys, values in zip(self.layers, session.keys, session.values):
            x = self._decode_layer(layer, x, rotation, keys, values, column, mask, end)
        session.length += 1
        return self._logits(self._norm(x, self.final_norm))  # (B, V)

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        """The output layer on ``x`` (B, H): fp32 logits (B, V) whose top ``REFINED_LOGITS`` per row are exact.

        A bf16 matmul rounds its outputs to bf16, 0.125 apart at SmolLM2's usual top logits of 16-32, so two
        candidates a tenth of a logit apart can come out equal and greedy decoding would pick by token id (seen on
        "What is the capital of France?": 25.55 vs 25.44 both became 25.5, and the lower id answered in French).
        Recomputing the few leading logits in fp32 from the same weights keeps the fast matmul for the rest."""
        logits = self.head(x).float()
        if self.dtype == torch.float32:
            return logits
        top = logits.topk(min(REFINED_LOGITS, logits.shape[-1]), dim=-1).indices  # (B, k)
        rows = self.head.rows(top)  # (B, k, H)
        if rows is None:
            return logits
        exact = torch.matmul(rows, x.float()[:, :, None])[..., 0]  # (B, k, H) @ (B, H, 1) -> (B, k)
        if self.head.bias is not None:
            exact = exact + self.head.bias.float()[top]
        return logits.scatter_(1, top, exact)

    @functools.cached_property
    def _half_sign(self) -> torch.Tensor:
        """(D,) of -1 then +1: ``x.roll(D // 2, -1) * sign = cat(-x[half:], x[:half])``, rotate-half."""
        half = self.head_dim // 2
        sign = torch.ones(self.head_dim, dtype=self.dtype, device=self.word.device)
        sign[:half] = -1
        return sign

    def _decode_layer(self, layer: _Layer, x, rotation, keys, values, column, mask, end: int) -> torch.Tensor:
        B = x.shape[0]
        Hq, G, D = self.heads, self.groups, self.head_dim
        qkv = layer.qkv(self._norm(x, layer.norm1)).view(B, Hq + 2 * G, D)
        qk = qkv[:, : Hq + G]  # queries and keys, rotated together
        if rotation is not None:
            cos, sin = rotation  # (B, 1, D): rotary(x) = x * cos + rotate_half(x) * sin
            qk = torch.addcmul(qk * cos, qk.roll(D // 2, -1), sin)  # (B, Hq + G, D)
        keys.index_copy_(2, column, qk[:, Hq:, None])  # cache (B, G, S, D) <- (B, G, 1, D)
        values.index_copy_(2, column, qkv[:, Hq + G :, None])
        # grouped-query decode without repeating keys: a group's query heads act as its "positions"
        q = qk[:, :Hq].view(B, G, Hq // G, D)
        keys, values = keys[:, :, :end], values[:, :, :end]  # (B, G, end, D): the columns written so far
        out = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask)  # (B, G, q_per_group, D)
        x = x + layer.out(out.reshape(B, Hq * D))
        h = layer.up(self._norm(x, layer.norm2))
        if self.swiglu:
            gate, up = h.chunk(2, dim=-1)
            h = F.silu(gate) * up
        else:
            h = self.act(h)
        return x + layer.down(h)

    def _layer(self, layer: _Layer, x, rotary, cache: torch.Tensor, mask, start: int, end: int) -> torch.Tensor:
        B, T, H = x.shape
        Hq, G, D = self.heads, self.groups, self.head_dim
        qkv = layer.qkv(self._norm(x, layer.norm1).view(B * T, H)).view(B, T, Hq + 2 * G, D)
        qk = qkv[:, :, : Hq + G]  # (B, T, Hq + G, D): rotate queries and keys in one go
        if rotary is not None:
            half = D // 2
            qk = qk * rotary[0] + torch.cat((-qk[..., half:], qk[..., :half]), dim=-1) * rotary[1]
        # cache (2, B, G, S, D): write this step's keys and values in place
        cache[0, :, :, start:end] = qk[:, :, Hq:].transpose(1, 2)
        cache[1, :, :, start:end] = qkv[:, :, Hq + G :].transpose(1, 2)
        keys, values = cache[0, :, :, :end], cache[1, :, :, :end]  # (B, G, S, D) views
        if T == 1:
            # grouped-query decode without repeating keys: a group's query heads act as its "positions"
            q = qk[:, 0, :Hq].view(B, G, Hq // G, D)  # (B, G, q_per_group, D)
            out = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask)  # (B, G, q_per_group, D)
        else:
            q = qk[:, :, :Hq].transpose(1, 2)  # (B, Hq, T, D)
            out = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask, enable_gqa=Hq != G)
            out = out.transpose(1, 2)  # (B, T, Hq, D)
        x = x + layer.out(out.reshape(B * T, Hq * D)).view(B, T, H)
        h = layer.up(self._norm(x, layer.norm2).view(B * T, H))
        if self.swiglu:
            gate, up = h.chunk(2, dim=-1)
            h = F.silu(gate) * up
        else:
            h = self.act(h)
        return x + layer.down(h).view(B, T, H)


class DecodeSession:
    """One batch's decoding state: the KV cache (layers, 2, B, groups, S, D) and the padding mask."""

    def __init__(self, decoder: PackedDecoder, batch_size: int, max_length: int, mask: torch.Tensor | None):
        self.decoder = decoder
        device = decoder.word.device
        shape = (len(decoder.layers), 2, batch_size, decoder.groups, max_length, decoder.head_dim)
        self.cache = torch.zeros(shape, dtype=decoder.dtype, device=device)
        self._views()
        self.length = 0
        self.padding = None if mask is None else mask.to(device=device, dtype=torch.bool)  # (B, S) real tokens
        self.columns = torch.arange(max_length, device=device)
        # (S, S) causal table, sliced per call: position i may see keys 0..i
        self._causal = torch.ones(max_length, max_length, dtype=torch.bool, device=device).tril()

    def _views(self) -> None:
        """Per-layer (B, G, S, D) views of the cache, made once (not per step)."""
        self.keys = list(self.cache[:, 0].unbind(0))
        self.values = list(self.cache[:, 1].unbind(0))

    def mask_for(self, start: int, end: int) -> torch.Tensor | None:
        """Boolean attention mask for queries ``start:end`` over keys ``0:end``, shaped for SDPA."""
        if end - start == 1:
            if self.padding is None:
                return None  # one query may see every cached key
            return self.padding[:, None, None, :end]  # (B, 1, 1, S)
        causal = self._causal[start:end, :end][None, None]  # (1, 1, T, S)
        if self.padding is None:
            return causal
        seen = causal & self.padding[:, None, None, :end]
        # a query always sees itself, so a row of left padding never becomes all-masked (SDPA gives NaN)
        diagonal = torch.zeros_like(causal)
        diagonal[..., torch.arange(end - start), torch.arange(start, end)] = True
        return seen | diagonal

    def prefill(self, ids: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        return self.decoder.forward(self, ids, positions)

    def step(self, tokens: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        return self.decoder.forward(self, tokens, positions)

    def reorder(self, index: torch.Tensor) -> None:
        """Keep the batch rows ``index`` (beam search's surviving beams), in place."""
        self.cache = self.cache.index_select(2, index)
        self._views()
