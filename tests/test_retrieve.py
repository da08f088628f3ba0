"""Hybrid retrieval on the real corpus with the real default model."""

from rag.evaluate import EvalQuestion, Gold
from rag.retrieve import question_kind


def _gold(record: dict) -> EvalQuestion:
    return EvalQuestion(record["id"], record["question"], [Gold(g["doc"], g["any"]) for g in record["gold"]])


def test_dev_set_answers_in_top_5_and_hit_at_1_at_least_0_9(engine, dev_questions):
    answerable = [_gold(r) for r in dev_questions if r["gold"]]
    first_hits, missed = 0, []
    for question in answerable:
        passages = engine.search(question.question, k=5)
        ranks = [p.rank for p in passages if question.hit(p.source, p.text)]
        if not ranks:
            missed.append(question.id)
        first_hits += bool(ranks) and ranks[0] == 1
    # d19 (党委主体责任具体指什么, whose answer has 党委 masked as *) needed a 是指 cue tuned on it
    # alone; the cue was removed (docs/tuning.md), so one miss is allowed.
    assert len(missed) <= 1, missed
    assert first_hits / len(answerable) >= 0.9


def test_traditional_question_finds_simplified_passage_and_back(engine):
    assert engine.search("上海如何推動四責協同納入考核?", k=1)[0].source.startswith("003")
    assert engine.search("县级监委向乡镇派出了什么机构?", k=1)[0].source.startswith("002")
    assert engine.search("縣級監委向鄉鎮派出了什麼機構?", k=1)[0].source.startswith("002")


def test_passages_are_ranked_with_falling_fused_scores(engine):
    passages = engine.search("纪委监督责任包括什么", k=8)
    assert [p.rank for p in passages] == list(range(1, 9))
    scores = [p.score for p in passages]
    assert scores == sorted(scores, reverse=True)
    for p in passages:
        assert engine.document(p.source).text[p.start : p.end] == p.text


def test_each_hit_records_where_each_ranking_put_it(engine):
    state = engine._state()
    hits = state.retriever.search("重庆市对问责影响期满的干部怎么处理?", 3)
    assert hits[0].chunk.source.startswith("002")
    assert set(hits[0].ranks) == {"dense", "words", "bigrams"}
    assert hits[0].ranks["bigrams"] <= 3 and hits[0].ranks["words"] <= 3
    assert 0.8 < hits[0].dense <= 1.0


def test_long_mixed_and_full_width_questions_are_handled(engine):
    assert engine.search("纪委" * 5000, k=3)[0].source[:3] in {"000", "002", "003", "004"}
    assert "监督责任" in engine.search("ＰＹＴＨＯＮ　与　纪委监督责任？", k=3)[0].text
    assert "主体责任" in engine.search("What is 主体责任?", k=3)[0].text


def test_fusion_ranks_the_passage_every_ranking_agrees_on_first(make_engine):
    engine = make_engine(
        {
            "a.txt": "青山县纪委建立了廉政档案制度，每年更新一次。",
            "b.txt": "绿水县开展了专项巡察，发现问题十二个。",
            "c.txt": "白云市推动派驻监督全覆盖。",
        }
    )
    hits = engine._state().retriever.search("青山县的廉政档案制度", 3)
    assert hits[0].chunk.source == "a.txt"
    assert hits[0].ranks == {"dense": 1, "words": 1, "bigrams": 1}
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


def test_question_kinds():
    assert question_kind("纪委监督责任包括什么") == "list"
    assert question_kind("廉政谈话开展了多少人次?") == "number"
    assert question_kind("党委主体责任具体指什么?") == "definition"
    assert question_kind("浙江哪一年实现派驻全覆盖?") == "time"
    assert question_kind("重庆市对干部的结论") == "general"
