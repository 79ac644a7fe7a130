"""Read foreign ``.pt`` files without running their code: ``torch.load(weights_only=True)`` plus a short allow-list.

A pickle can name any importable function and have the loader call it (``os.system`` included), so
every ``.pt`` megasense did not write goes through PyTorch's restricted unpickler. Besides tensors
and plain containers, Megatron-LM checkpoints hold a few harmless objects, which are allowed here:

- ``argparse.Namespace`` (the training ``args``);
- NumPy arrays and dtypes (``np_rng_state``, the NumPy random state saved with every iteration);
- ``io.BytesIO`` (Transformer Engine's ``_extra_state`` in older Megatron-Core checkpoints);
- enum members from ``megatron.*.enums`` modules (``args.model_type = ModelType.encoder_or_decoder``,
  ``args.attention_backend``). Megatron is not installed, so each is rebuilt as a :class:`ForeignEnum`
  that records the class name and value and runs no code of the checkpoint's.

Anything else is refused, named, and never executed.
"""

from __future__ import annotations

import argparse
import io
import pickle
import pickletools
import re
import warnings
import zipfile
from pathlib import Path
from typing import Any

import torch

from megasense.errors import CheckpointError

_GLOBAL_IN_ERROR = re.compile(r"GLOBAL ([\w.]+)")
_FOREIGN_ENUM_MODULE = re.compile(r"^megatron(\.\w+)*\.enums$")
_MAX_ATTEMPTS = 16
_BENIGN_ROOTS = ("torch", "collections", "builtins", "__builtin__", "copy_reg", "copyreg")


class ForeignEnum:
    """Stand-in for an enum member of a package that is not installed (``megatron.core.enums.ModelType(1)``)."""

    qualname = "?"

    def __init__(self, value: Any = None, *rest: Any) -> None:
        self.value = value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ForeignEnum) and (self.qualname, self.value) == (other.qualname, other.value)

    def __hash__(self) -> int:
        return hash((self.qualname, self.value))

    def __repr__(self) -> str:
        return f"{self.qualname}({self.value!r})"


def _foreign_enum(qualname: str) -> type[ForeignEnum]:
    return type(qualname.rsplit(".", 1)[-1], (ForeignEnum,), {"qualname": qualname})


def _numpy_globals() -> list:
    try:
        import numpy as np
    except ImportError:  # numpy is optional for torch; without it rng states cannot occur anyway
        return []
    reconstruct = np._core.multiarray._reconstruct if hasattr(np, "_core") else np.core.multiarray._reconstruct
    allowed: list = [np.ndarray, np.dtype, reconstruct, (reconstruct, "numpy.core.multiarray._reconstruct")]
    for code in ("u1", "u4", "i4", "i8", "f4", "f8", "b1"):
        cls = type(np.dtype(code))
        if cls is not np.dtype:
            allowed.append(cls)
    return allowed


def _base_allowed() -> list:
    return [argparse.Namespace, io.BytesIO, *_numpy_globals()]


def _is_foreign_enum(name: str) -> bool:
    module = name.rpartition(".")[0]
    return bool(_FOREIGN_ENUM_MODULE.match(module))


def _pickle_globals_static(path: Path, limit: int = 4) -> list[str]:
    """Names the pickle stream(s) at the start of ``path`` import, found without unpickling anything."""
    names: list[str] = []
    try:
        with open(path, "rb") as handle:
            for _ in range(limit):
                strings: list[str] = []
                for op, arg, _pos in pickletools.genops(handle):
                    if op.name in ("GLOBAL", "INST") and isinstance(arg, str):
                        names.append(arg.replace(" ", "."))
                    elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
                        names.append(f"{strings[-2]}.{strings[-1]}")
                    elif isinstance(arg, str):
                        strings.append(arg)
    except Exception:  # a scan for a better message; the real load already failed
        pass
    return names


def _unsafe_in_zip(path: Path, allowed: list) -> list[str]:
    with torch.serialization.safe_globals(allowed):
        return list(torch.serialization.get_unsafe_globals_in_checkpoint(str(path)))


def _refuse(path: Path, names: list[str]) -> CheckpointError:
    listed = ", ".join(sorted(set(names)))
    return CheckpointError(
        path,
        f"megasense refuses to unpickle {listed}: loading it could run arbitrary code. Only tensors, plain "
        "containers, argparse.Namespace, NumPy arrays and Megatron enums are read from foreign .pt files",
    )


def _corrupt(path: Path, exc: BaseException) -> CheckpointError:
    detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return CheckpointError(path, f"is truncated or not a PyTorch checkpoint ({type(exc).__name__}: {detail[:200]})")


def safe_torch_load(path: str | Path) -> Any:
    """``torch.load(path, map_location="cpu", weights_only=True)`` with Megatron's harmless globals allowed.

    Raises :class:`CheckpointError` naming the file when it is missing, truncated or corrupt, or when
    it would need a global outside the allow-list (that global is named and never executed).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(path, "does not exist" if not path.exists() else "is not a file")
    allowed = _base_allowed()
    enums: dict[str, type[ForeignEnum]] = {}
    if zipfile.is_zipfile(path):
        try:
            unsafe = _unsafe_in_zip(path, allowed)
        except Exception as exc:
            raise _corrupt(path, exc) from None
        for name in unsafe:
            if _is_foreign_enum(name):
                enums[name] = _foreign_enum(name)
        refused = [n for n in unsafe if n not in enums]
        if refused:
            raise _refuse(path, refused)
    for _ in range(_MAX_ATTEMPTS):
        extra = [(cls, name) for name, cls in enums.items()]
        try:
            with torch.serialization.safe_globals(allowed + extra), warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="Detected pickle protocol")
                return torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as exc:
            message = str(exc)
            if "Weights only load failed" not in message:
                raise _corrupt(path, exc) from None
            match = _GLOBAL_IN_ERROR.search(message)
            name = match.group(1) if match else None
            if name is not None and _is_foreign_enum(name) and name not in enums:
                enums[name] = _foreign_enum(name)  # a legacy (non-zip) file: learn its enums one by one
                continue
            if name is None:
                known = {_global_name(obj) for obj in allowed}
                scanned = [
                    n for n in _pickle_globals_static(path) if n not in known and n.split(".")[0] not in _BENIGN_ROOTS
                ]
                if scanned:
                    raise _refuse(path, scanned) from None
                reason = _last_line(message)
                raise CheckpointError(path, f"cannot be read safely with weights_only=True ({reason})") from None
            raise _refuse(path, [name]) from None
        except (
            RuntimeError,
            EOFError,
            OSError,
            ValueError,
            KeyError,
            IndexError,
            TypeError,
            zipfile.BadZipFile,
        ) as exc:
            raise _corrupt(path, exc) from None
    raise CheckpointError(path, f"needs more than {_MAX_ATTEMPTS} foreign enum classes; refusing to go on")


def _global_name(obj: Any) -> str:
    if isinstance(obj, tuple):
        return obj[1]
    return f"{obj.__module__}.{obj.__qualname__}"


def _last_line(message: str) -> str:
    lines = [line.strip() for line in message.splitlines() if line.strip() and "documentation" not in line]
    return lines[-1][:200] if lines else "unknown reason"
