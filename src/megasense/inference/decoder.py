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

The KV cache is preallocated as one tensor for all layers, written in place at one column per step; the
attention mask and rotary tables are built once per batch and sliced per step (views, no allocation).
The engine (``megasense.inference.generation``) drives it through ``new_session``; it sees only ids.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from megasense.models import GPTModel
from megasense.models.layers import activation_fn

WEIGHT_FORMATS = ("fp32", "bf16", "int8", "int4")
INT4_GROUP = 32


def _dense_weight(module: nn.Linear) -> tuple[torch.Tensor, torch.Tensor | None]:
    """A linear layer's effective weight (LoRA adapters folded in) and bias, detached."""
    weight = module.weight.detach()
    delta = getattr(module, "delta_weight", None)  # a LoRALinear: fold its adapter in
    if delta is not None:
        weight = weight + delta().to(weight.dtype)
    return weight, None if module.bias is None else module.bias.detach()


def _fitting_format(fmt: str, N: int, K: int) -> str:
    """``fmt``, or the next wider format where torch's kernels refuse the shape: int4 packs N in 16s and K in
    groups of 32; the int8 kernel crashes on K not a multiple of 8 (seen with K=37)."""
    if fmt == "int4" and (K % INT4_GROUP or N % 16):
        fmt = "int8"
    if fmt == "int8" and K % 8:
        fmt = "bf16"
    return fmt


class PackedLinear:
    """``y = x @ W.T + b`` for 2-D ``x`` (M, K), with ``W`` (N, K) stored in one of ``WEIGHT_FORMATS``."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, fmt: str) -> None:
        weight = weight.float()
        N, K = weight.shape
        self.format = _fitting_format(fmt, N, K)
        act = torch.float32 if fmt == "fp32" else torch.bfloat16
        self.bias = None if bias is None else bias.to(act)
        if self.format in ("fp32", "bf16"):
            self.weight = weight.to(act).contiguous()
        elif self.format == "int8":
            # symmetric per output row: scale = max|w| / 127
            scale = weight.abs().amax(dim=1).clamp(min=1e-12) / 127.0  # (N,)
            self.weight = (weight / scale[:, None]).round().clamp(-127, 127).to(torch.int8).contiguous()
            self.scale = scale.to(act)
        else:  # int4, asymmetric per group of 32 inputs: w = q * scale + min, q in 0..15
            groups = weight.view(N, K // INT4_GROUP, INT4_GROUP)
            low, high = groups.amin(-1), groups.amax(-1)  # (N, K/G)
            scale = ((high - low) / 15).clamp(min=1e-12)
            q = ((groups - low[..., None]) / scale[..., None]).round().clamp(0, 15).to(torch.int32).view(N, K)
            self.weight = torch._convert_weight_to_int4pack_for_cpu(q, 1)
            # torch's kernel computes (q - 8) * scale + zero, so zero = min + 8 * scale; layout (K/G, N, 2)
            self.scale = torch.stack([scale, low + 8 * scale], dim=-1).transpose(0, 1).contiguous().to(act)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.format in ("fp32", "bf16"):
            return F.linear(x, self.weight, self.bias)
        if self.format == "int8":
            y = torch._weight_int8pack_mm(x, self.weight, self.scale)
        else:
            y = torch._weight_int4pack_mm_for_cpu(x, self.weight, INT4_GROUP, self.scale)
        return y if self.bias is None else y + self.bias

    def nbytes(self) -> int:
        extra = getattr(self, "scale", None)
        return self.weight.nbytes + (extra.nbytes if extra is not None else 0)


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
        self.head = PackedLinear(head_weight[: self.vocab_size], head_bias, head_fmt)

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

    def nbytes(self) -> int:
        """Bytes of weights read per decoded token (what bounds the speed at small batch)."""
        linears = [m for layer in self.layers for m in (layer.qkv, layer.out, layer.up, layer.down)]
        return sum(m.nbytes() for m in linears) + self.head.nbytes()

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
        return self.head(x).float()  # (B, V)

    def decode(self, session: DecodeSession, ids: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """One new token per row: ``ids`` (B,) at ``positions`` (B,) -> logits (B, V) in fp32.

        Per-step work is shared by the layers: the rotary embedding becomes one (D, D) matrix per row (a single
        matmul per layer rotates every query and key head), and one mask over the whole static cache hides
        padding and the columns not written yet, so no layer slices its cache."""
        x = self._embed(ids, positions)  # (B, H)
        rotation = None
        if self.rotary is not None:
            cos, sin = self.rotary[0][positions], self.rotary[1][positions]  # (B, D)
            rotation = torch.diag_embed(cos) + self._swap * sin[:, None, :]  # (B, D, D): x @ R = rotary(x)
        column = session.columns[session.length : session.length + 1]  # (1,) where this step's keys go
        mask = session.decode_mask(session.length + 1)  # (B or 1, 1, 1, S)
        for layer, keys, values in zip(self.layers, session.keys, session.values):
            x = self._decode_layer(layer, x, rotation, keys, values, column, mask)
        session.length += 1
        return self.head(self._norm(x, self.final_norm)).float()  # (B, V)

    @functools.cached_property
    def _swap(self) -> torch.Tensor:
        """(D, D) with ``x @ swap = cat(-x[half:], x[:half])``: rotate-half as a matrix."""
        D, half = self.head_dim, self.head_dim // 2
        swap = torch.zeros(D, D, dtype=self.dtype, device=self.word.device)
        index = torch.arange(half, device=self.word.device)
        swap[index + half, index] = -1
        swap[index, index + half] = 1
        return swap

    def _decode_layer(self, layer: _Layer, x, rotation, keys, values, column, mask) -> torch.Tensor:
        B = x.shape[0]
        Hq, G, D = self.heads, self.groups, self.head_dim
        qkv = layer.qkv(self._norm(x, layer.norm1)).view(B, Hq + 2 * G, D)
        qk = qkv[:, : Hq + G]  # queries and keys, rotated together
        if rotation is not None:
            qk = torch.matmul(qk, rotation)  # (B, Hq + G, D)
        keys.index_copy_(2, column, qk[:, Hq:, None])  # cache (B, G, S, D) <- (B, G, 1, D)
        values.index_copy_(2, column, qkv[:, Hq + G :, None])
        # grouped-query decode without repeating keys: a group's query heads act as its "positions"
        q = qk[:, :Hq].view(B, G, Hq // G, D)
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

    def decode_mask(self, end: int) -> torch.Tensor:
        """(B or 1, 1, 1, S): the keys a new query may see: the first ``end`` columns, less left padding."""
        visible = self.columns < end  # (S,)
        if self.padding is not None:
            visible = visible & self.padding[:, : visible.shape[0]]  # (B, S)
        return visible.view(-1, 1, 1, visible.shape[-1])

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
