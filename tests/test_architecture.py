"""The layering rules of STYLE.md that import-linter cannot express: model code stays single-device."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "megasense"


def _imports(package: str) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in (SRC / package).rglob("*.py"):
        names = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module:
                names.add(node.module)
        found[str(path.relative_to(SRC))] = names
    return found


def test_models_never_import_distributed_or_upper_layers():
    forbidden = ("torch.distributed", "megasense.parallel", "megasense.training", "megasense.formats", "megasense.zoo")
    offenders = {f: sorted(n for n in names if n.startswith(forbidden)) for f, names in _imports("models").items()}
    assert not {f: n for f, n in offenders.items() if n}, offenders


def test_parallel_never_names_a_model_class():
    for path in (SRC / "parallel").rglob("*.py") if (SRC / "parallel").is_dir() else []:
        text = path.read_text(encoding="utf-8")
        for cls in ("BertModel", "GPTModel", "BertForSequenceClassification", "BertForPreTraining"):
            assert cls not in text, f"{path} names {cls}; parallel/ must work from plans only"
