"""BM25 (`rag.index.bm25`) over jieba words and over character bigrams: ranking, saving, idf."""

from __future__ import annotations

import bm25s
import numpy as np
import pytest

from rag.config import Settings
from rag.index.bm25 import BM25, _NumpyBM25, document_frequencies, idf, token_ids, top_k
from rag.text.normalize import normalize
from rag.text.tokenize import TOKENIZERS, bigrams

PASSAGES = [
    "纪委要履行监督责任，聚焦主责主业，做到有案必查。",
    "党委要担负起全面从严治党主体责任，书记是第一责任人。",
    "基层减负要精简会议文件，减少督查检查考核。",
    "巡视整改要压实整改主体责任，建立整改台账。",
]

SETTINGS = Settings()


def tokens(tokenizer, text: str) -> list[str]:
    return TOKENIZERS[tokenizer](normalize(text))


@pytest.fixture(params=list(TOKENIZERS))
def index(request) -> tuple[str, BM25]:
    return request.param, BM25(SETTINGS.bm25_k1, SETTINGS.bm25_b).build([tokens(request.param, p) for p in PASSAGES])


@pytest.mark.parametrize(
    ("question", "best"),
    [("纪委的监督责任", 0), ("全面从严治党", 1), ("精简会议文件", 2), ("巡视整改台账", 3)],
)
def test_bm25_ranks_the_right_passage_first(index, question, best):
    tokenizer, bm25 = index
    scores = bm25.scores(tokens(tokenizer, question))
    assert scores.shape == (len(PASSAGES),) and scores.dtype == np.float32
    assert int(np.argmax(scores)) == best
    assert scores[best] > 0 and np.sort(scores)[-2] < scores[best]


def test_search_returns_only_matching_passages_best_first(index):
    tokenizer, bm25 = index
    ids, scores = bm25.search(tokens(tokenizer, "全面从严治党 精简会议"), k=10)
    assert sorted(ids.tolist()) == [1, 2]
    assert list(scores) == sorted(scores, reverse=True) and (scores > 0).all()
    assert bm25.search(tokens(tokenizer, "全面从严治党 精简会议"), k=1)[0].size == 1


def test_unknown_query_tokens_score_zero(index):
    tokenizer, bm25 = index
    assert not bm25.scores(tokens(tokenizer, "量子计算机芯片")).any()
    assert not bm25.scores([]).any()
    assert not bm25.scores([""]).any()
    assert bm25.search(["从未出现过的词"], k=3)[0].size == 0


def test_unknown_tokens_do_not_change_the_scores_of_known_ones(index):
    tokenizer, bm25 = index
    known = tokens(tokenizer, "精简会议")
    np.testing.assert_array_equal(bm25.scores([*known, "从未出现过的词", "zzz"]), bm25.scores(known))


def test_document_frequency():
    bm25 = BM25(SETTINGS.bm25_k1, SETTINGS.bm25_b).build([tokens("bigrams", p) for p in PASSAGES])
    assert bm25.document_frequency(["责任", "整改", "减负", "不存在", ""]).tolist() == [3, 1, 1, 0, 0]
    words_bm25 = BM25(SETTINGS.bm25_k1, SETTINGS.bm25_b).build([tokens("words", p) for p in PASSAGES])
    assert words_bm25.document_frequency(["主体", "纪委"]).tolist() == [2, 1]


def test_save_and_load_give_the_same_scores(index, tmp_path):
    tokenizer, bm25 = index
    bm25.save(tmp_path / "bm25")
    loaded = BM25.load(tmp_path / "bm25", len(PASSAGES), SETTINGS.bm25_k1, SETTINGS.bm25_b)
    for question in ("纪委的监督责任", "主体责任", "量子计算机"):
        query = tokens(tokenizer, question)
        np.testing.assert_allclose(loaded.scores(query), bm25.scores(query), rtol=1e-6)
    np.testing.assert_array_equal(
        loaded.document_frequency(["责任", "不存在"]), bm25.document_frequency(["责任", "不存在"])
    )


def test_parameters_change_the_scores():
    corpus = [tokens("bigrams", p) for p in PASSAGES]
    query = tokens("bigrams", "主体责任")
    default = BM25(SETTINGS.bm25_k1, SETTINGS.bm25_b).build(corpus).scores(query)
    assert not np.allclose(default, BM25(k1=2.0, b=0.2).build(corpus).scores(query))


def test_empty_index_and_empty_passages(tmp_path):
    empty = BM25(SETTINGS.bm25_k1, SETTINGS.bm25_b).build([])
    assert empty.scores(["责任"]).shape == (0,)
    assert empty.document_frequency(["责任"]).tolist() == [0]
    empty.save(tmp_path / "empty")
    assert BM25.load(tmp_path / "empty", 0, SETTINGS.bm25_k1, SETTINGS.bm25_b).scores(["责任"]).shape == (0,)
    with_blank = BM25(SETTINGS.bm25_k1, SETTINGS.bm25_b).build([[], tokens("bigrams", PASSAGES[0])])
    scores = with_blank.scores(tokens("bigrams", "监督责任"))
    assert scores[0] == 0 and scores[1] > 0


def test_top_k():
    scores = np.array([0.5, 0.0, 2.0, -1.0, 1.0], dtype=np.float32)
    ids, values = top_k(scores, 3)
    assert ids.tolist() == [2, 4, 0] and values.tolist() == [2.0, 1.0, 0.5]
    assert top_k(scores, 10)[0].tolist() == [2, 4, 0]  # only positive scores
    assert top_k(scores, 0)[0].size == 0
    assert top_k(np.zeros(0, dtype=np.float32), 5)[0].size == 0


@pytest.mark.parametrize("tokenizer", list(TOKENIZERS))
def test_a_simplified_question_finds_a_traditional_passage(tokenizer):
    passages = ["黨委要擔負起全面從嚴治黨主體責任。", "紀委要履行監督責任。", "基層減負要精簡會議文件。"]
    bm25 = BM25(SETTINGS.bm25_k1, SETTINGS.bm25_b).build([tokens(tokenizer, p) for p in passages])
    assert int(np.argmax(bm25.scores(tokens(tokenizer, "纪委的监督责任")))) == 1
    assert int(np.argmax(bm25.scores(tokens(tokenizer, "基层减负")))) == 2


def test_numpy_builder_gives_the_same_scores_as_bm25s():
    corpus = [bigrams(t) for t in ("纪委监督责任的内容", "党委主体责任和纪委监督责任", "上海四责协同", "责任责任责任")]
    reference, ours = bm25s.BM25(), _NumpyBM25()
    reference.index(corpus, show_progress=False)
    ours.index(corpus, show_progress=False)
    for query in (["纪委", "责任"], ["上海"], ["责任"]):
        assert np.allclose(reference.get_scores(query), ours.get_scores(query), atol=1e-6)


def test_document_frequencies_of_token_ids_are_those_the_index_finds(index):
    tokenizer, bm25 = index
    vocab: dict[str, int] = {}
    ids, lengths = token_ids([tokens(tokenizer, p) for p in PASSAGES], vocab)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    ordered = sorted(vocab, key=vocab.__getitem__)
    np.testing.assert_array_equal(document_frequencies(ids, offsets, len(vocab)), bm25.document_frequency(ordered))
    assert document_frequencies(np.zeros(0, np.int32), np.zeros(1, np.int64), 3).tolist() == [0, 0, 0]


def test_idf_is_lucenes_as_bm25s_computes_it():
    df = np.array([0, 1, 2, 5, 10])
    weights = idf(df, 10)
    np.testing.assert_allclose(weights, [bm25s.scoring._score_idf_lucene(d, 10) for d in df.tolist()], rtol=1e-12)
    assert (weights[:-1] > weights[1:]).all() and weights[-1] > 0  # rarer tokens weigh more; none weighs nothing
