"""NVIDIA Megatron-LM checkpoints: ``args`` (the run's arguments), ``keys`` (parameter names), ``vocab``
(its tokenizer files) and ``checkpoint`` (reading and writing, tensor-parallel shards included)."""

from megasense.formats.megatron.checkpoint import read_megatron, write_megatron

__all__ = ["read_megatron", "write_megatron"]
