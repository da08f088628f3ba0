"""The extractive composer: an `Answer` from retrieved passages, shaped by the kind of question.

No language model: the composer reads the question against its passages once (`rag.answer.scoring.Reading`),
picks sentences (`rag.answer.scoring`), a whole enumerated block (`rag.answer.enumerations`) or a
shape (`rag.answer.shapes`: comparison, summary, how-to, metadata, a list item), asks `rag.answer.abstain`
and the answer judge (`rag.answer.judging`) whether that answers the question, and renders the quotes with
`[n]` citations (`rag.answer.render`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from rag.answer import abstain, shapes
from rag.answer.abstain import Quote, Verdict
from rag.answer.enumerations import Enumerations, with_what_follows
from rag.answer.evidence import answers_count, has_time
from rag.answer.judge import Judge
from rag.answer.judging import Judgement, judge_passages
from rag.answer.metadata import document_about
from rag.answer.render import render
from rag.answer.scoring import Reading, select, spelling_hits, spells_abbreviation, with_relation
from rag.answer.shapes import Block
from rag.answer.types import Answer, Citation
from rag.config import Settings
from rag.index.knowledge_base import KnowledgeBase
from rag.model import Hit, Passage
from rag.query.names import quotable
from rag.query.question import Query
from rag.retrieval.retriever import Retriever
from rag.text.normalize import is_traditional


class Composer:
    """Builds `Answer`s from retrieved hits of one knowledge base.

    With a `retriever`, a comparison searches each side on its own and a question not written in
    Chinese has its candidate sentences embedded to rank them. With a loaded `judge` (and
    `Settings.judge`), the judge refuses what the rules would answer when no found sentence answers
    (`Settings.judge_threshold`) and moves up the passages whose sentences it finds answer
    (`Settings.judge_order_weight`); with `Settings.judge_ranks` it also chooses the sentences.
    """

    def __init__(
        self, kb: KnowledgeBase, settings: Settings, retriever: Retriever | None = None, judge: Judge | None = None
    ) -> None:
        self.kb, self.settings, self.retriever = kb, settings, retriever
        self.judge = judge if settings.judge else None
        self.enumerations = Enumerations()

    def quoted_first(self, question: str, query: Query, hits: list[Hit]) -> list[Hit]:
        """`hits` with the passages the answer to `question` quotes first, in the answer's order, then the
        others in the order of the answer's passages (the judge's, `Settings.judge_order_weight`); ranks
        renumbered: search ranks by the same judgement as answers."""
        answer = self.compose(question, query, hits)
        quoted = [] if answer.abstained else [c.chunk_id for c in answer.citations if c.chunk_id]
        order = list(dict.fromkeys([*quoted, *(p.chunk_id for p in answer.passages)]))
        position = {chunk_id: i for i, chunk_id in enumerate(order)}
        ranked = sorted(hits, key=lambda h: (position.get(h.chunk.id, len(order)), h.rank))
        return [dataclasses.replace(h, rank=i) for i, h in enumerate(ranked, start=1)]

    def compose(
        self,
        question: str,
        query: Query,
        hits: list[Hit],
        exclude: set[tuple[str, int]] | None = None,
        item: Citation | None = None,
    ) -> Answer:
        """The answer to `query` from `hits`; `exclude` holds (source, start) of sentences already
        quoted in the conversation; `item` is an earlier answer's list item a follow-up asks about."""
        exclude = exclude or set()
        reading = Reading(self.kb, self.settings, query, self._embedder(query))
        judge = self.judge if item is None and _judged(query) else None
        judgement: Judgement | None = None
        if judge is not None and (self.settings.judge_order_weight or self.settings.judge_ranks):
            judgement = judge_passages(reading, hits, judge, exclude)  # the rules then read the judge's order
            hits = judgement.hits if judgement is not None else hits
        passages = [Passage.from_hit(h) for h in hits]
        verdict = abstain.assess(reading, hits)

        def judged() -> float | None:
            return None if judgement is None else judgement.best

        def answer(blocks: list[Block], verdict: Verdict) -> Answer:
            text, citations, truncated = render(self.kb, self.settings, blocks, is_traditional(question))
            return Answer(
                question, text, False, citations, passages, query.text, query.kind, truncated,
                verdict.evidence, verdict.confidence,
                judged=None if any(b.as_list for b in blocks) else judged(),  # a list is the rules' answer
            )  # fmt: skip

        def abstained(verdict: Verdict) -> Answer:
            text = abstain.abstention_text(passages, self.settings, verdict)
            return Answer(
                question, text, True, [], passages, query.text, query.kind, False,
                verdict.evidence, verdict.confidence, verdict.reason, judged=judged(),
            )  # fmt: skip

        if item is not None:
            sentences = shapes.item(reading, self.enumerations, item.source, item.start)
            if sentences:
                return answer([Block(sentences)], Verdict(False, "", "", verdict.evidence, verdict.confidence))
        if verdict.abstain:
            return abstained(verdict)
        if judge is not None and judgement is None:  # not read to order passages: only now the rules would answer
            judgement = judge_passages(reading, hits, judge, exclude)
        blocks = self._shape(reading, hits, exclude, judgement)
        if blocks is None:
            reason = "no_metadata" if query.kind == "metadata" else "no_quotes"
            return abstained(Verdict(True, reason, "", verdict.evidence, verdict.confidence))
        quotes = _quotes(self.kb, blocks)
        checked = abstain.check_answer(query, quotes, self.kb, self.settings, verdict)
        if not checked.abstain and _unsupported(judgement, query, blocks, quotes, verdict.confidence, self.settings):
            # the rules found nothing wrong, but no sentence found answers by the judge
            checked = Verdict(True, "no_more" if exclude else "judge", "", verdict.evidence, judged() or 0.0)
        if checked.abstain:
            return abstained(checked)
        return answer(blocks, checked)

    def _shape(
        self, reading: Reading, hits: list[Hit], exclude: set[tuple[str, int]], judgement: Judgement | None = None
    ) -> list[Block] | None:
        """The blocks that answer the question: its kind's shape, else the best sentences or list."""
        query = reading.query
        kind = query.kind
        top = hits[: self.settings.answer_passages]
        if kind != "comparison":  # a comparison quotes each side's documents itself
            top = quotable(top)
            top = [*top, *spelling_hits(reading, top)]
        if kind == "metadata":
            blocks = shapes.metadata(reading, hits)
            if blocks is not None or shapes.about_a_document(query):
                return blocks  # None: the article has no quotable metadata
        if kind == "comparison":
            blocks = shapes.comparison(reading, top, self._search if self.retriever is not None else None)
            if blocks is not None:
                return blocks
        if kind == "summary":
            blocks = shapes.summary(reading, top)
            if blocks is not None:
                return blocks
        scorer = reading.scorer()
        ranked = scorer.candidates(top, exclude)
        if not ranked:
            return None
        if kind in ("list", "general", "how", "definition"):
            items = self.enumerations.answer(scorer, top, exclude, ranked[0].score)
            if items is not None:
                return [Block(items, as_list=True)]
        if judgement is not None and self.settings.judge_ranks:
            ranked = judgement.rescored(ranked, self.settings.judge_rule_weight)
        picked = with_relation(scorer, select(ranked, kind, top, self.settings, query.chinese), ranked)
        if kind == "how":
            picked = shapes.extend_methods(reading, picked)
        elif kind == "number":
            picked = shapes.with_figure_before(reading, picked, lambda t: answers_count(query, t))
        elif kind == "time":
            picked = shapes.with_figure_before(reading, picked, has_time)
        elif kind == "definition":  # a term named in a lead-in is defined after it
            picked = with_what_follows(reading, picked, self.settings.answer_max_chars // 2)
        return [Block(picked)]

    def _search(self, text: str, k: int | None = None) -> list[Hit]:
        assert self.retriever is not None
        query = self.retriever.query(text)
        return self.retriever.search(query, k or self.settings.answer_passages)

    def _embedder(self, query: Query) -> Callable[[list[str]], list[float]] | None:
        if self.retriever is None or query.chinese:
            return None
        encode = self.retriever.embedder.encode_documents

        def cosines(texts: list[str]) -> list[float]:
            return (encode(texts) @ np.asarray(query.vector, dtype=np.float32)).tolist()

        return cosines


def _unsupported(
    judgement: Judgement | None,
    query: Query,
    blocks: list[Block],
    quotes: list[Quote],
    confidence: float,
    settings: Settings,
) -> bool:
    """Whether the judge read the question and no sentence it read answers it well enough at the rules'
    `confidence`. The rules' own answers are not the judge's to refuse: an enumerated list (its items are no
    answer sentences on their own) and quotes that spell out a numbered abbreviation the question asks about
    (`三转` → 转职能、转方式、转作风: the judge never learnt abbreviations, the rules check each item)."""
    if judgement is None or any(block.as_list for block in blocks):
        return False
    if any(spells_abbreviation(query, q.text) for q in quotes):
        return False
    return not judgement.answers(confidence, settings)


_RULED = ("metadata", "comparison", "summary", "yes_no")


def _judged(query: Query) -> bool:
    """Whether the judge decides for this question: one in Chinese that asks something, of a kind whose
    answer is a sentence that holds it. A document's metadata, a comparison's two sides, a summary's
    outline are found by their own rules; a yes/no question's answer is no span (the judge never saw one);
    a question in English or a bare list of keywords is not what the judge was trained on."""
    return query.chinese and query.asks and query.kind not in _RULED


def _quotes(kb: KnowledgeBase, blocks: list[Block]) -> list[Quote]:
    """What the abstention check reads: each quote with its passage, heading and title."""
    quotes = []
    for block in blocks:
        for s in block.sentences:
            document = kb.documents[s.source]
            chunk = next((c for c in kb.chunks_of(s.source) if c.start <= s.start < c.end), None)
            context = f"{document.title}\n{chunk.heading}\n{chunk.text}" if chunk else document.title
            quote = document.text[s.start : s.end]
            quotes.append(Quote(quote, f"{context}\n{quote}", document.text, document_about(document), s.start))
    return quotes
