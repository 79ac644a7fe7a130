"""Hugging Face transformers directories: ``keys`` maps parameter names and configs, ``directory`` reads and writes."""

from megasense.formats.hf.directory import read_hf_dir, write_hf_dir

__all__ = ["read_hf_dir", "write_hf_dir"]
