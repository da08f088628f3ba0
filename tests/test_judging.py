"""rag/answer/judging.py: the judge applied to a question's passages — order, sentences, refusals."""

from __future__ import annotations

from rag.answer.judging import Judgement, rerank
from rag.answer.scoring import Sentence
from rag.model import Chunk, Hit


def _hit(rank: int, chunk_id: str) -> Hit:
    chunk = Chunk(chunk_id, "a.txt", "标题", "", 0, 3, "正文。")
    return Hit(rank, chunk, 1.0 / rank, 0.5)


def test_passages_rank_by_their_best_sentence_with_the_retrieval_as_a_small_prior():
    hits = [_hit(1, "a#1"), _hit(2, "a#2"), _hit(3, "a#3"), _hit(4, "a#4")]
    chosen = [
        Sentence("a.txt", 0, 3, 1, "a#1"),
        Sentence("a.txt", 10, 13, 2, "a#2"),
        Sentence("a.txt", 20, 23, 3, "a#3"),
    ]
    scores = {("a.txt", 0): 0.30, ("a.txt", 10): 0.90, ("a.txt", 20): 0.36}
    ordered = rerank(hits, chosen, scores, weight=0.1)
    assert [h.chunk.id for h in ordered] == ["a#2", "a#1", "a#3", "a#4"]  # 0.30 + 0.1/1 > 0.36 + 0.1/3
    assert [h.rank for h in ordered] == [1, 2, 3, 4]
    assert hits[0].rank == 1 and hits[0].chunk.id == "a#1"  # the retriever's hits are left as they were


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
