"""Filters (`rag.retrieval.filters`): which documents a question may be answered from, by source and by date,
applied in retrieval so the top passages come from allowed documents; through `Engine.search` and `ask`."""

from __future__ import annotations

from datetime import date

import numpy as np
import pytest

from rag.engine import QuestionError
from rag.model import Document
from rag.retrieval.filters import FilterError, Filters, depth, document_date, restrict

DATED = {  # the real corpus's documents and their cleaned metadata dates
    "001_3c3daffbd3ff1c74.txt": date(2022, 9, 20),
    "003_f1c9c6d7a3f56b9a.txt": date(2022, 1, 13),  # written 2022年01月13日
    "004_9af9869cdca38ca3.txt": date(2023, 9, 17),
}


@pytest.mark.parametrize(
    ("written", "expected"),
    [("2022-09-20", date(2022, 9, 20)), ("2022年01月13日", date(2022, 1, 13)), ("2021/3/5", date(2021, 3, 5)),
     ("2020年6月", date(2020, 6, 1)), ("", None), ("去年", None), ("2022-13-40", None)],
)  # fmt: skip
def test_a_documents_date_is_read_from_its_metadata(written, expected):
    assert document_date(Document("a.txt", "标题", "正文", {"date": written} if written else {})) == expected


@pytest.mark.parametrize(
    ("arguments", "message"),
    [({"date_from": "2022/01/01"}, "YYYY-MM-DD"), ({"date_to": "2022-02-30"}, "YYYY-MM-DD"),
     ({"date_from": "20220101"}, "YYYY-MM-DD"), ({"date_from": "2023-01-01", "date_to": "2022-01-01"}, "晚于")],
)  # fmt: skip
def test_bad_dates_are_refused_with_what_to_write(arguments, message):
    with pytest.raises(FilterError, match=message):
        Filters.of(**arguments)


def test_sources_match_ids_stems_and_title_words():
    document = Document("001_x.txt", "从严治党主体责任实践与思考", "…", {"date": "2022-09-20"})
    assert Filters.of("001_x.txt").allows(document)
    assert Filters.of(["001_x"]).allows(document)
    assert Filters.of(["别的", "主体责任"]).allows(document)
    assert Filters.of("從嚴治黨").allows(document)  # title words compared in matching form
    assert not Filters.of("监督责任").allows(document)
    assert Filters.of(date_from="2022-09-20", date_to="2022-09-20").allows(document)
    assert not Filters.of(date_from="2022-09-21").allows(document)
    assert not Filters.of(date_to="2023-01-01").allows(Document("y.txt", "无日期", "…"))
    assert not Filters.of() and Filters.of("  ") == Filters()


def test_a_filtered_ranking_keeps_only_allowed_chunks_in_order():
    mask = np.array([False, True, False, True, True])
    ids, scores = restrict(np.array([0, 3, 2, 1, 4]), np.array([0.9, 0.8, 0.7, 0.6, 0.5]), mask, 2)
    assert ids.tolist() == [3, 1] and scores.tolist() == [0.8, 0.6]
    assert depth(50, 10, 1000) == 1000 and depth(50, 900, 1000) == 112 and depth(50, 0, 1000) == 0


def test_a_date_range_keeps_only_documents_dated_within_it(engine):
    passages = engine.search("纪委监督责任", k=5, date_from="2022-01-01", date_to="2022-12-31")
    assert len(passages) == 5  # filled from the allowed documents, not cut from the unfiltered five
    assert {p.source for p in passages} <= {"001_3c3daffbd3ff1c74.txt", "003_f1c9c6d7a3f56b9a.txt"}
    assert {p.source for p in engine.search("纪委监督责任", date_from="2023-01-01")} == {"004_9af9869cdca38ca3.txt"}


def test_a_source_filter_changes_which_documents_are_cited(engine):
    plain = engine.ask("纪委监督责任包括什么")
    assert any(c.source.startswith("004") for c in plain.citations)
    narrowed = engine.ask("纪委监督责任包括什么", source=["主体责任"])  # title words of 001 only
    assert {p.source for p in narrowed.passages} == {"001_3c3daffbd3ff1c74.txt"}
    assert {c.source for c in narrowed.citations} <= {"001_3c3daffbd3ff1c74.txt"}
    by_id = engine.search("纪委监督责任", source="003_f1c9c6d7a3f56b9a")
    assert by_id and {p.source for p in by_id} == {"003_f1c9c6d7a3f56b9a.txt"}


def test_a_date_filter_changes_which_documents_are_cited(engine):
    plain = engine.ask("纪委监督责任包括什么")
    dated = engine.ask("纪委监督责任包括什么", date_to="2022-12-31")
    assert {c.source for c in plain.citations} != {c.source for c in dated.citations}
    assert {c.source for c in dated.citations} <= {"001_3c3daffbd3ff1c74.txt", "003_f1c9c6d7a3f56b9a.txt"}
    assert {p.source for p in dated.passages} <= {"001_3c3daffbd3ff1c74.txt", "003_f1c9c6d7a3f56b9a.txt"}


def test_filters_that_allow_nothing_give_no_passages_and_an_abstention(engine):
    assert engine.search("纪委监督责任", source="没有这样的文档") == []
    answer = engine.ask("纪委监督责任包括什么", date_from="2030-01-01")
    assert answer.abstained and answer.citations == [] and answer.passages == []


def test_a_bad_date_is_a_question_error(engine):
    with pytest.raises(QuestionError, match="YYYY-MM-DD"):
        engine.ask("纪委监督责任包括什么", date_from="2022.1.1")
    with pytest.raises(QuestionError, match="YYYY-MM-DD"):
        engine.search("纪委监督责任", date_to="明天")
