"""One tokenizer type for every model: a Hugging Face ``tokenizers.Tokenizer`` plus the facts the
models need (special tokens, maximum length, chat template). Text in, token ids out; nothing here
knows about models.

On disk a tokenizer is ``tokenizer.json`` (the Hugging Face serialisation, readable by transformers'
``PreTrainedTokenizerFast``) plus ``tokenizer_config.json`` with the special tokens, the maximum
length, the chat template and megasense's ``kind``. Older directories with only ``vocab.txt``
(WordPiece) or ``vocab.json`` + ``merges.txt`` (byte-level BPE) load too.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import tokenizers
import torch
from tokenizers import decoders, models, normalizers, pre_tokenizers, processors

from megasense.errors import MegasenseInputError
from megasense.files.atomic import AtomicPath, atomic_write_text

Kind = Literal["wordpiece", "unigram", "bpe"]
KINDS = ("wordpiece", "unigram", "bpe")
TOKENIZER_JSON = "tokenizer.json"
TOKENIZER_CONFIG = "tokenizer_config.json"

# A length that stands for "no limit" in transformers' tokenizer_config.json files.
_NO_LIMIT = 1_000_000


class TokenizerError(MegasenseInputError):
    """Tokenizer files are missing or malformed; the message names the file."""


@dataclass(frozen=True)
class SpecialTokens:
    pad: str | None = None
    unk: str | None = None
    bos: str | None = None
    eos: str | None = None
    cls: str | None = None
    sep: str | None = None
    mask: str | None = None


@dataclass
class Batch:
    input_ids: torch.Tensor
    """(B, T) int64 token ids, padded with the pad id."""
    attention_mask: torch.Tensor
    """(B, T) int64, 1 for real tokens and 0 for padding."""
    token_type_ids: torch.Tensor | None = None
    """(B, T) int64 segment ids for encoders; None for decoders."""
    lengths: list[int] = field(default_factory=list)
    """Real (unpadded) length of each row."""
    truncated: list[bool] = field(default_factory=list)
    """Whether each row lost tokens to truncation."""


def _infer_kind(backend: tokenizers.Tokenizer) -> Kind:
    model = json.loads(backend.to_str()).get("model", {}).get("type", "")
    return {"WordPiece": "wordpiece", "Unigram": "unigram", "BPE": "bpe"}.get(model, "bpe")


class Tokenizer:
    def __init__(
        self,
        backend: tokenizers.Tokenizer,
        *,
        kind: Kind,
        special: SpecialTokens,
        model_max_length: int = 512,
        chat_template: str | None = None,
    ) -> None:
        if kind not in KINDS:
            raise TokenizerError(f"kind={kind!r} is not one of {', '.join(KINDS)}")
        self.backend = backend
        self.kind = kind
        self.special = special
        self.model_max_length = model_max_length
        self.chat_template = chat_template
        for name, token in asdict(special).items():
            if token is not None and backend.token_to_id(token) is None:
                raise TokenizerError(f"special token {name}={token!r} is not in the vocabulary")
        # Encoding is stateless here: padding and truncation are applied per call, not configured on
        # the shared backend (which would leak settings between callers).
        self.backend.no_padding()
        self.backend.no_truncation()

    # ------------------------------------------------------------------------------------------
    # Construction from files
    # ------------------------------------------------------------------------------------------
    @classmethod
    def load(cls, directory: str | Path) -> Tokenizer:
        """Load from a megasense or Hugging Face directory (tokenizer.json, or vocab.txt / vocab.json)."""
        directory = Path(directory)
        settings = _read_settings(directory)
        path = directory / TOKENIZER_JSON
        if path.is_file():
            try:
                backend = tokenizers.Tokenizer.from_file(str(path))
            except Exception as exc:  # tokenizers raises a bare Exception on malformed JSON
                raise TokenizerError(f"{path}: is not a valid tokenizer.json ({exc})") from None
        elif (directory / "vocab.txt").is_file():
            backend = wordpiece_backend(directory / "vocab.txt", lowercase=settings.get("do_lower_case", True))
        elif (directory / "vocab.json").is_file() and (directory / "merges.txt").is_file():
            backend = byte_level_bpe_backend(directory / "vocab.json", directory / "merges.txt")
        else:
            raise TokenizerError(
                f"{directory}: no tokenizer files (expected tokenizer.json, vocab.txt, or vocab.json + merges.txt)"
            )
        kind = settings.get("megasense_kind") or _infer_kind(backend)
        special = _special_from_settings(settings, backend, kind)
        max_length = int(settings.get("model_max_length") or 512)
        if max_length >= _NO_LIMIT:
            max_length = 512
        return cls(
            backend,
            kind=kind,
            special=special,
            model_max_length=max_length,
            chat_template=settings.get("chat_template"),
        )

    def save(self, directory: str | Path) -> None:
        """Write tokenizer.json and tokenizer_config.json into ``directory`` (created if missing).

        Both files are also what transformers' ``AutoTokenizer`` reads, so this doubles as the
        Hugging Face export.
        """
        directory = Path(directory)
        with AtomicPath(directory / TOKENIZER_JSON) as tmp:
            self.backend.save(str(tmp))
        settings: dict[str, Any] = {
            "megasense_kind": self.kind,
            "tokenizer_class": "PreTrainedTokenizerFast",
            "model_max_length": self.model_max_length,
        }
        for name, token in asdict(self.special).items():
            if token is not None:
                settings[f"{name}_token"] = token
        if self.chat_template:
            settings["chat_template"] = self.chat_template
        atomic_write_text(directory / TOKENIZER_CONFIG, json.dumps(settings, indent=2, ensure_ascii=False) + "\n")

    # ------------------------------------------------------------------------------------------
    # Facts
    # ------------------------------------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        """Number of ids the tokenizer can produce (including added tokens)."""
        return self.backend.get_vocab_size(with_added_tokens=True)

    def token_to_id(self, token: str) -> int | None:
        return self.backend.token_to_id(token)

    def id_to_token(self, index: int) -> str | None:
        return self.backend.id_to_token(index)

    def _id(self, token: str | None) -> int | None:
        return None if token is None else self.backend.token_to_id(token)

    @property
    def pad_id(self) -> int:
        """The padding id: the pad token, else the end-of-sequence token, else 0."""
        for token in (self.special.pad, self.special.eos, self.special.sep):
            index = self._id(token)
            if index is not None:
                return index
        return 0

    @property
    def eos_id(self) -> int | None:
        return self._id(self.special.eos)

    @property
    def bos_id(self) -> int | None:
        return self._id(self.special.bos)

    @property
    def special_ids(self) -> set[int]:
        ids = {self._id(t) for t in asdict(self.special).values()}
        return {i for i in ids if i is not None}

    # ------------------------------------------------------------------------------------------
    # Encoding and decoding
    # ------------------------------------------------------------------------------------------
    def encode(self, text: str, *, add_special_tokens: bool = True, max_length: int | None = None) -> list[int]:
        return self.encode_batch([text], add_special_tokens=add_special_tokens, max_length=max_length)[0]

    def encode_batch(
        self, texts: Sequence[str], *, add_special_tokens: bool = True, max_length: int | None = None
    ) -> list[list[int]]:
        """Token ids of each text (no padding), truncated to ``max_length`` keeping the final special token."""
        return [ids for ids, _ in self._encode(texts, add_special_tokens, max_length)]

    def _encode(self, texts: Sequence[str], add_special_tokens: bool, max_length: int | None):
        if isinstance(texts, str):
            raise TypeError("encode_batch takes a list of texts; use encode() for one")
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"text {i} is a {type(text).__name__}, expected str")
        limit = max_length or None
        encodings = self.backend.encode_batch(list(texts), add_special_tokens=add_special_tokens)
        out = []
        for enc in encodings:
            ids = enc.ids
            truncated = limit is not None and len(ids) > limit
            if truncated:
                ids = self._truncate(ids, limit, add_special_tokens)
            out.append((ids, truncated))
        return out

    def _truncate(self, ids: list[int], limit: int, add_special_tokens: bool) -> list[int]:
        """Keep the first ``limit`` ids; an encoder's closing token ([SEP], </s>) stays at the end."""
        closing = self._id(self.special.sep) if self.kind != "bpe" else None
        if add_special_tokens and closing is not None and ids and ids[-1] == closing and limit >= 2:
            return [*ids[: limit - 1], closing]
        return ids[:limit]

    def __call__(
        self,
        texts: Sequence[str],
        *,
        max_length: int | None = None,
        add_special_tokens: bool = True,
        padding_side: Literal["right", "left"] = "right",
    ) -> Batch:
        """Encode, truncate to ``max_length`` (default: the model's limit) and pad into tensors."""
        limit = max_length or self.model_max_length
        encoded = self._encode(texts, add_special_tokens, limit)
        lengths = [len(ids) for ids, _ in encoded]
        width = max(lengths, default=0)
        input_ids = torch.full((len(encoded), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(encoded), width), dtype=torch.long)
        for row, (ids, _) in enumerate(encoded):
            span = slice(0, len(ids)) if padding_side == "right" else slice(width - len(ids), width)
            input_ids[row, span] = torch.as_tensor(ids, dtype=torch.long)
            mask[row, span] = 1
        token_types = torch.zeros_like(input_ids) if self.kind != "bpe" else None
        return Batch(
            input_ids=input_ids,
            attention_mask=mask,
            token_type_ids=token_types,
            lengths=lengths,
            truncated=[t for _, t in encoded],
        )

    def decode(self, ids: Sequence[int], *, skip_special_tokens: bool = True) -> str:
        return self.backend.decode(list(ids), skip_special_tokens=skip_special_tokens)

    def decode_batch(self, batch: Sequence[Sequence[int]], *, skip_special_tokens: bool = True) -> list[str]:
        return self.backend.decode_batch([list(ids) for ids in batch], skip_special_tokens=skip_special_tokens)

    def tokens(self, text: str) -> list[str]:
        """The token strings of ``text`` (with special tokens), for inspection."""
        return self.backend.encode(text).tokens

    # ------------------------------------------------------------------------------------------
    # Chat
    # ------------------------------------------------------------------------------------------
    def apply_chat_template(self, messages: Sequence[dict[str, str]], *, add_generation_prompt: bool = True) -> str:
        """Render ``messages`` ([{"role": ..., "content": ...}]) with the model's Jinja chat template."""
        if not self.chat_template:
            raise TokenizerError("this tokenizer has no chat template; pass a plain prompt instead")
        for i, message in enumerate(messages):
            if not isinstance(message, dict) or "role" not in message or "content" not in message:
                raise TokenizerError(f"message {i} must be a dict with 'role' and 'content', got {message!r}")
        return _compile_template(self.chat_template).render(
            messages=list(messages),
            add_generation_prompt=add_generation_prompt,
            bos_token=self.special.bos or "",
            eos_token=self.special.eos or "",
        )


# ----------------------------------------------------------------------------------------------
# Builders for vocabulary files
# ----------------------------------------------------------------------------------------------
def wordpiece_backend(vocab_file: str | Path, *, lowercase: bool = True) -> tokenizers.Tokenizer:
    """BERT's WordPiece tokenizer from a vocab.txt (CJK characters split one per token, as BERT does)."""
    path = Path(vocab_file)
    try:
        vocab = {}
        for line in path.read_text(encoding="utf-8").splitlines():
            vocab.setdefault(line.rstrip("\n"), len(vocab))
    except (OSError, UnicodeDecodeError) as exc:
        raise TokenizerError(f"{path}: cannot read the WordPiece vocabulary ({exc})") from None
    for token in ("[UNK]", "[CLS]", "[SEP]"):
        if token not in vocab:
            raise TokenizerError(f"{path}: the vocabulary has no {token} token; is this a BERT vocab.txt?")
    backend = tokenizers.Tokenizer(models.WordPiece(vocab, unk_token="[UNK]", max_input_chars_per_word=100))
    backend.normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=lowercase
    )
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    cls_id, sep_id = vocab["[CLS]"], vocab["[SEP]"]
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    backend.decoder = decoders.WordPiece(prefix="##")
    return backend


def byte_level_bpe_backend(vocab_file: str | Path, merges_file: str | Path) -> tokenizers.Tokenizer:
    """GPT-2's byte-level BPE from vocab.json + merges.txt."""
    try:
        bpe = models.BPE.from_file(str(vocab_file), str(merges_file))
    except Exception as exc:  # tokenizers raises a bare Exception on unreadable files
        raise TokenizerError(f"{vocab_file} / {merges_file}: cannot read the BPE vocabulary ({exc})") from None
    backend = tokenizers.Tokenizer(bpe)
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    backend.post_processor = processors.ByteLevel(trim_offsets=False)
    return backend


def _read_settings(directory: Path) -> dict[str, Any]:
    """tokenizer_config.json merged over special_tokens_map.json (both optional)."""
    settings: dict[str, Any] = {}
    for name in ("special_tokens_map.json", TOKENIZER_CONFIG):
        path = directory / name
        if not path.is_file():
            continue
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            raise TokenizerError(f"{path}: is not valid JSON ({exc})") from None
        if not isinstance(data, dict):
            raise TokenizerError(f"{path}: expected a JSON object, found {type(data).__name__}")
        settings.update(data)
    return settings


def _token_text(value: Any) -> str | None:
    """transformers writes special tokens as strings or as {"content": ...} objects."""
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) else None


_DEFAULTS: dict[str, dict[str, tuple[str, ...]]] = {
    "wordpiece": {"pad": ("[PAD]",), "unk": ("[UNK]",), "cls": ("[CLS]",), "sep": ("[SEP]",), "mask": ("[MASK]",)},
    "unigram": {
        "pad": ("<pad>",),
        "unk": ("<unk>",),
        "bos": ("<s>",),
        "eos": ("</s>",),
        "cls": ("<s>",),
        "sep": ("</s>",),
        "mask": ("<mask>",),
    },
    "bpe": {"bos": ("<|endoftext|>", "<s>"), "eos": ("<|endoftext|>", "</s>"), "unk": ("<unk>",)},
}


def _special_from_settings(settings: dict[str, Any], backend: tokenizers.Tokenizer, kind: str) -> SpecialTokens:
    found: dict[str, str | None] = {}
    for name in ("pad", "unk", "bos", "eos", "cls", "sep", "mask"):
        token = _token_text(settings.get(f"{name}_token"))
        if token is None:
            token = next((t for t in _DEFAULTS[kind].get(name, ()) if backend.token_to_id(t) is not None), None)
        found[name] = token if token is not None and backend.token_to_id(token) is not None else None
    return SpecialTokens(**found)


@functools.lru_cache(maxsize=16)
def _compile_template(template: str):
    """The compiled template, once per template source: compiling costs about 6 ms, 40x a rendering, and chat
    training renders every prefix of every conversation."""
    try:
        import jinja2
        from jinja2.sandbox import ImmutableSandboxedEnvironment
    except ImportError:  # pragma: no cover - jinja2 is a dependency
        raise TokenizerError("chat templates need jinja2: pip install jinja2") from None

    def raise_exception(message: str) -> None:
        raise TokenizerError(f"chat template: {message}")

    # A sandbox, as transformers uses: templates come with model files and must not reach Python.
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"])
    env.globals["raise_exception"] = raise_exception
    try:
        return env.from_string(template)
    except jinja2.TemplateError as exc:
        raise TokenizerError(f"the chat template does not parse: {exc}") from None
