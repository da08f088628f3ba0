"""rag/answer/judging.py: the judge applied to a question's passages — order, sentences, refusals."""

from __future__ import annotations

from rag.answer.judging import Judgement, rerank
from rag.answer.scoring import Sentence
from rag.model import Chunk, Hit


def _hit(rank: int, chunk_id: str) -> Hit:
    chunk = Chunk(chunk_id, "a.txt", "标题", "", 0, 3, "正文。")
    return Hit(rank, chunk, 1.0 / rank, 0.5)


def test_passages_rank_by_retrieval_score_plus_their_best_sentences_probability():
    hits = [_hit(1, "a#1"), _hit(2, "a#2"), _hit(3, "a#3"), _hit(4, "a#4")]  # scores 1, 0.5, 0.33, 0.25
    chosen = [
        Sentence("a.txt", 0, 3, 1, "a#1"),
        Sentence("a.txt", 10, 13, 2, "a#2"),
        Sentence("a.txt", 20, 23, 3, "a#3"),
    ]
    scores = {("a.txt", 0): 0.30, ("a.txt", 10): 0.90, ("a.txt", 20): 0.36}
    ordered = rerank(hits, chosen, scores, weight=1.0)
    assert [h.chunk.id for h in ordered] == ["a#2", "a#1", "a#3", "a#4"]  # 0.5 + 0.9 > 1 + 0.3 > 0.33 + 0.36
    assert [h.rank for h in ordered] == [1, 2, 3, 4]
    assert hits[0].rank == 1 and hits[0].chunk.id == "a#1"  # the retriever's hits are left as they were
    light = rerank(hits, chosen, scores, weight=0.5)  # 1 + 0.15 > 0.5 + 0.45: retrieval keeps the lead
    assert [h.chunk.id for h in light] == ["a#1", "a#2", "a#3", "a#4"]
    assert [h.chunk.id for h in rerank(hits, chosen, scores, weight=0.0)] == ["a#1", "a#2", "a#3", "a#4"]


def test_sentences_are_rescored_by_the_judge_and_unread_ones_follow():
    a, b, c = (
        Sentence("a.txt", 0, 3, 1, "a#1", 5.0),
        Sentence("a.txt", 4, 8, 1, "a#1", 4.0),
        Sentence("b.txt", 0, 3, 2, "b#1", 9.0),
    )
    judgement = Judgement({a.key: 0.2, b.key: 0.8}, [])
    rescored = judgement.rescored([a, b, c], 0.3)
    assert [s.key for s in rescored] == [b.key, a.key, c.key]
    assert [round(s.score, 3) for s in rescored] == [0.933, 0.367, 0.3]  # p + 0.3 × rule score / best rule score
    a2, c2 = Sentence("a.txt", 0, 3, 1, "a#1", 5.0), Sentence("b.txt", 0, 3, 2, "b#1", 9.0)
    assert [round(s.score, 3) for s in judgement.rescored([a2, c2], 0.0)] == [0.2, 0.0]
    assert judgement.best == 0.8 and Judgement({}, []).best == 0.0


def test_the_judges_bar_moves_with_the_rules_confidence():
    from rag.config import Settings

    judgement = Judgement({("a.txt", 0): 0.04}, [])
    settings = Settings(judge_threshold=0.05, judge_confidence_weight=3.0, judge_confidence_center=1.0)
    assert not judgement.answers(1.0, settings)  # at the centre: the plain threshold, 0.04 < 0.05
    assert judgement.answers(1.2, settings)  # a close match needs less: logit(0.04) + 0.6 > logit(0.05)
    assert not Judgement({("a.txt", 0): 0.2}, []).answers(0.4, settings)  # a weak one more: 0.2 is not enough
    plain = settings.replace(judge_confidence_weight=0.0)
    assert Judgement({("a.txt", 0): 0.2}, []).answers(0.4, plain) and not judgement.answers(1.2, plain)


def _engine(engine, **settings):
    from rag.engine import Engine

    other = Engine(engine.settings.replace(**settings), engine.embedder)
    other.reload()
    assert other.wait_for_judge() == other.settings.judge
    return other


def test_search_shows_first_what_the_answer_quotes(engine):
    question = "纪委监督责任包括什么"
    answer = engine.ask(question)
    assert not answer.abstained and answer.citations[0].source.startswith("004")
    first = answer.citations[0]  # 004's definition: 纪委的监督责任主要是指…
    passages = engine.search(question, k=5)
    assert passages[0].source == first.source and passages[0].start <= first.start < passages[0].end
    assert [p.rank for p in passages] == [1, 2, 3, 4, 5]
    plain = _engine(engine, search_as_answers=False).search(question, k=10)  # retrieval order alone
    assert not any(p.start <= first.start < p.end for p in plain[:3] if p.source == first.source)


def test_ranking_by_the_judge_answers_and_search_agree(engine):
    ranked = _engine(engine, judge_ranks=True)
    answer = ranked.ask("纪委监督责任包括什么")
    assert not answer.abstained and answer.judged is not None
    first = answer.citations[0]
    passages = ranked.search("纪委监督责任包括什么", k=5)
    assert passages[0].source == first.source and passages[0].start <= first.start < passages[0].end


def test_a_question_no_found_sentence_answers_well_enough_is_refused_by_the_judge(engine):
    question = "党委书记的工资是多少"  # near the topic; no salary anywhere in the corpus
    strict = _engine(engine, judge_threshold=0.3).ask(question)
    assert strict.abstained and strict.reason == "judge" and strict.judged is not None and strict.judged < 0.3
    lenient = _engine(engine, judge_threshold=0.0).ask(question)
    assert lenient.judged == strict.judged  # the same reading; only the threshold differs
    assert lenient.abstained == (lenient.reason not in ("", "judge"))  # refused by a rule, if at all


def test_with_the_judge_off_the_rules_answer_alone(engine):
    answer = _engine(engine, judge=False).ask("纪委监督责任包括什么")
    assert answer.judged is None and not answer.abstained


def test_the_judge_reads_a_masked_word_where_the_question_has_it(engine):
    from rag.answer.judging import as_read, candidates
    from rag.answer.scoring import Reading

    state = engine._state()
    question = "党委主体责任的内涵是什么"  # 004 masks 党委: `*的主体责任主要是指…`
    query = state.retriever.query(question)
    hits = state.retriever.search(query, 10)
    reading = Reading(state.kb, engine.settings, query, None)
    chosen = candidates(reading, hits, set())
    read = as_read(reading, hits, chosen)
    masked = [
        (s, c)
        for s, c in zip(chosen, read, strict=True)
        if "*的主体责任主要是指" in state.kb.documents[s.source].text[s.start : s.end]
    ]
    assert masked, "004's masked definition should be among the sentences the judge reads"
    for _, candidate in masked:
        assert "党委的主体责任主要是指" in candidate.sentence and "*的主体责任" not in candidate.sentence
        assert "反*斗争" in candidate.sentence  # a mask the question has no word for stays
    quoted = state.kb.documents[masked[0][0].source].text[masked[0][0].start : masked[0][0].end]
    assert "*的主体责任" in quoted  # the document (and any quote of it) stays as published


def test_the_judge_moves_up_the_passage_whose_sentence_answers(engine):
    """004's masked definition ranks below 003's two passages that repeat the question's words; the judge
    finds it answers and the answer's passages put it first (retrieval order alone does not)."""
    question = "党委主体责任指的是什么"
    plain = _engine(engine, judge_order_weight=0.0).ask(question)
    judged = engine.ask(question)
    assert not plain.passages[0].source.startswith("004") and not plain.passages[0].text.count("主体责任主要是指")
    assert judged.passages[0].source.startswith("004") and "主体责任主要是指" in judged.passages[0].text
    assert {p.start for p in judged.passages} == {p.start for p in plain.passages}  # reordered, not replaced
