"""Inference engines over token ids: batched encoder runs and KV-cache generation."""
