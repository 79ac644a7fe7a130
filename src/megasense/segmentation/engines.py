"""The engines behind ``Segmenter``: each turns a run of Chinese text (no spaces) into words.

``pkuseg``: spacy-pkuseg's CRF segmenter (compiled, MIT) running the CTB8 model that the ``pkuseg``
0.0.12 wheel ships (MIT). The model is converted once, on first use, from the wheel's text format into
spacy-pkuseg's under ``$MEGASENSE_HOME/segmentation/`` (a few seconds; later loads take about one).
``jieba``: jieba's dictionary and HMM segmenter (MIT), faster and coarser. jieba is a dependency of
megasense, pkuseg the ``zh`` extra (``pip install 'megasense[zh]'``: its wheel's metadata says
"Proprietary" beside an MIT licence file, and its model was trained on the LDC-licensed CTB8);
``auto`` picks pkuseg, which scores higher on UD Chinese GSD (``benchmarks/segmentation.py``), and
falls back to jieba where pkuseg's packages are missing.

Tags come from :class:`JiebaTagger` for either engine, so ``pos=True`` adds tags without changing
the words.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.metadata
import importlib.util
import io
import logging
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Protocol

from megasense.errors import MegasenseInputError, MissingExtraError
from megasense.segmentation.tagsets import is_symbols

ENGINES = ("auto", "pkuseg", "jieba")
PKUSEG_MODEL = "ctb8"
_INSTALL = {
    "pkuseg": "pip install 'megasense[zh]'",
    "jieba": "pip install 'jieba>=0.42'",
}
_NUMBER = re.compile(r"[0-9０-９]+(?:[.,．][0-9０-９]+)*%?")
_LATIN = re.compile(r"[A-Za-zＡ-Ｚａ-ｚ]")


class Engine(Protocol):
    name: str

    def cut(self, run: str) -> list[str]:
        """The words of ``run``, a piece of text without whitespace; joined, they give ``run`` back."""
        ...


def resolve_engine(engine: str) -> str:
    """``pkuseg`` or ``jieba``: ``auto`` is pkuseg when its packages are installed, else jieba."""
    if engine not in ENGINES:
        raise MegasenseInputError(f"unknown segmentation engine {engine!r}; choose one of {', '.join(ENGINES)}")
    if engine != "auto":
        return engine
    have_pkuseg = all(importlib.util.find_spec(m) is not None for m in ("spacy_pkuseg", "pkuseg"))
    return "pkuseg" if have_pkuseg else "jieba"


def load_engine(name: str, *, home: Path | None = None) -> Engine:
    """A loaded engine by name (``pkuseg`` or ``jieba``); a missing package raises an error naming it.

    Engines never change once loaded (user words are handled by the ``Segmenter``), so a process keeps
    one copy of each: pkuseg's model takes seconds and about 500 MB to load, jieba's about 100 MB.
    """
    return _load_engine(name, home)


def load_tagger() -> JiebaTagger:
    """The process's one :class:`JiebaTagger` (jieba's dictionary of tags: about a second, 50 MB)."""
    return _load_tagger()


@functools.lru_cache(maxsize=4)
def _load_engine(name: str, home: Path | None) -> Engine:
    if name == "pkuseg":
        return PkusegEngine(home=home)
    if name == "jieba":
        return JiebaEngine()
    raise MegasenseInputError(f"unknown segmentation engine {name!r}; choose pkuseg or jieba")


class JiebaEngine:
    name = "jieba"

    def __init__(self) -> None:
        jieba = _require("jieba", "jieba")
        jieba.setLogLevel(logging.WARNING)  # it logs "Building prefix dict" to stderr otherwise
        self.tokenizer = jieba.Tokenizer()  # a private one: user words never leak into jieba's global

    def cut(self, run: str) -> list[str]:
        return self.tokenizer.lcut(run, HMM=True)


class PkusegEngine:
    name = "pkuseg"

    def __init__(self, *, home: Path | None = None) -> None:
        spacy_pkuseg = _require("spacy_pkuseg", "pkuseg")
        model_dir = pkuseg_model_dir(home)
        with _quiet():  # spacy-pkuseg prints its loading steps
            # user_dict=None: no extra dictionary (its default one lowers F1 on UD GSD: 0.799 against 0.812)
            self._segmenter = spacy_pkuseg.pkuseg(model_name=str(model_dir), user_dict=None)

    def cut(self, run: str) -> list[str]:
        return self._segmenter.cut(run)


class JiebaTagger:
    """Native (jieba) tags for words cut by any engine.

    A word gets the tag of jieba's dictionary; a word jieba does not know gets the tag of its longest
    ending that jieba knows (Chinese compounds are head-final: 加长型礼车 -> 礼车 -> n), else ``n``;
    numbers get ``m``, Latin-script words ``eng``, punctuation and symbols ``w``.
    """

    def __init__(self) -> None:
        jieba = _require("jieba", "jieba")
        posseg = _require("jieba.posseg", "jieba")
        jieba.setLogLevel(logging.WARNING)
        self._known: dict[str, str] = posseg.POSTokenizer(jieba.Tokenizer()).word_tag_tab  # word -> tag
        self._guessed: dict[str, str] = {}

    def known(self, word: str) -> str | None:
        """The tag of ``word`` in jieba's dictionary, or None."""
        return self._known.get(word)

    def tag(self, word: str) -> str:
        tag = self._known.get(word)
        if tag is not None:
            return tag
        tag = self._guessed.get(word)
        if tag is None:
            if len(self._guessed) > 100_000:  # bounded: a large corpus has many unknown words
                self._guessed.clear()
            tag = self._guessed[word] = self._guess(word)
        return tag

    def _guess(self, word: str) -> str:
        if is_symbols(word):
            return "w"
        if _NUMBER.fullmatch(word):
            return "m"
        if word.isascii():  # cut out whole by the segmenter: a Latin word (iPhone, COVID-19) or digits (3:1)
            return "eng" if _LATIN.search(word) else "m"
        for start in range(1, len(word)):  # the longest ending jieba knows: compounds are head-final
            tag = self._known.get(word[start:])
            if tag is not None:
                return tag
        return "n"  # nothing known: a run of Han characters is most often a noun


@functools.lru_cache(maxsize=1)
def _load_tagger() -> JiebaTagger:
    return JiebaTagger()


def pkuseg_model_dir(home: Path | None = None) -> Path:
    """spacy-pkuseg's copy of the CTB8 model of the ``pkuseg`` wheel, converted on first use."""
    spec = importlib.util.find_spec("pkuseg")
    source = Path(next(iter(spec.submodule_search_locations))) / "models" / PKUSEG_MODEL if spec else None
    if source is None or not (source / "model.txt").is_file():
        raise MissingExtraError(
            f"the pkuseg engine needs the {PKUSEG_MODEL} model that the pkuseg 0.0.12 wheel ships "
            f"({'not installed' if source is None else f'{source} has no model.txt'}): {_INSTALL['pkuseg']}"
        )
    version = importlib.metadata.version("pkuseg")
    target = (home or megasense_home()) / "segmentation" / f"pkuseg-{PKUSEG_MODEL}-{version}"
    if not ((target / "weights.npz").is_file() and (target / "features.msgpack").is_file()):
        _convert(source, target)
    return target


def megasense_home() -> Path:
    """``$MEGASENSE_HOME``, or the user's cache directory: the rule of ``zoo.embedded.megasense_home``
    (repeated here: this room sits below zoo and may not import it)."""
    env = os.environ.get("MEGASENSE_HOME")
    if env:
        return Path(env).expanduser()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("megasense"))


def _convert(source: Path, target: Path) -> None:
    """Convert the wheel's text model into spacy-pkuseg's format, in a temporary folder renamed into place."""
    from spacy_pkuseg.feature_extractor import FeatureExtractor
    from spacy_pkuseg.model import Model

    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        for path in source.iterdir():
            if path.suffix != ".py":
                _link_or_copy(path, work / path.name)
        with _quiet():
            FeatureExtractor.load(str(work))  # reads the text files, writes features.msgpack beside them
            Model.load(str(work))  # reads model.txt, writes weights.npz
        for path in list(work.iterdir()):
            if path.name not in ("features.msgpack", "weights.npz"):
                path.unlink()
        try:
            work.rename(target)
        except OSError:
            if not (target / "weights.npz").is_file():  # not another process's finished conversion
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _link_or_copy(path: Path, link: Path) -> None:
    try:
        link.symlink_to(path)
    except OSError:  # no symlinks here (some Windows accounts)
        shutil.copy2(path, link)


@contextlib.contextmanager
def _quiet():
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        yield


def _require(module: str, engine: str):
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingExtraError(
            f"the {engine} segmentation engine needs {module}, a dependency of megasense: {_INSTALL[engine]}"
        ) from None
