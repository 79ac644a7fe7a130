"""``megasense version``: versions of megasense and the libraries it runs on."""

from __future__ import annotations

import importlib.metadata as md

from rich.console import Console


def version() -> None:
    """Print the versions of megasense, torch, tokenizers and safetensors."""
    console = Console()
    for package in ("megasense", "torch", "tokenizers", "safetensors"):
        try:
            console.print(f"{package} {md.version(package)}")
        except md.PackageNotFoundError:
            console.print(f"{package} (not installed)")
