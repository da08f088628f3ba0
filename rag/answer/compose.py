"""The extractive composer: an `Answer` from retrieved passages, shaped by the kind of question.

No language model: the composer picks sentences (`rag.answer.scoring`), a whole enumerated block
(`rag.answer.enumerations`) or a shape (`rag.answer.shapes`: comparison, summary, how-to, metadata, a list item),
asks `rag.answer.abstain` whether that answers the question, and renders the quotes with `[n]` citations.
A quote is shown in the asker's script (Traditional sources for a Simplified question are converted
with OpenCC); the citation keeps the verbatim span, so
`document.text[citation.start:citation.end] == citation.quote` holds by construction.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from rag.answer import abstain, shapes
from rag.answer.abstain import Quote, Verdict
from rag.answer.enumerations import Enumerations
from rag.answer.evidence import answers_count, has_time
from rag.answer.metadata import document_about
from rag.answer.scoring import Sentence, SentenceScorer, is_heading, select
from rag.answer.shapes import Block
from rag.answer.types import Answer, Citation
from rag.config import Settings
from rag.index.knowledge_base import KnowledgeBase
from rag.model import Hit, Passage
from rag.query.names import quotable
from rag.query.question import Query
from rag.retrieval.retriever import Retriever
from rag.text.normalize import is_traditional, to_simplified, to_traditional

HEADING_MARK = "（标题）"


class Composer:
    """Builds `Answer`s from retrieved hits of one knowledge base.

    With a `retriever`, a comparison searches each side on its own and a question not written in
    Chinese has its candidate sentences embedded to rank them.
    """

    def __init__(self, kb: KnowledgeBase, settings: Settings, retriever: Retriever | None = None) -> None:
        self.kb, self.settings, self.retriever = kb, settings, retriever
        self.enumerations = Enumerations()

    def scorer(self, query: Query, terms: list[str] | None = None) -> SentenceScorer:
        """A sentence scorer for `query` (optionally on other key terms)."""
        return SentenceScorer(self.kb, self.settings, query, terms, self._embedder(query))

    # --- composing -----------------------------------------------------------------------------

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
        passages = [Passage.from_hit(h) for h in hits]
        verdict = abstain.assess(query, hits, self.kb, self.settings)

        def answer(blocks: list[Block], verdict: Verdict) -> Answer:
            text, citations, truncated = self.render(blocks, traditional=is_traditional(question))
            return Answer(
                question, text, False, citations, passages, query.text, query.kind, truncated,
                verdict.evidence, verdict.confidence,
            )  # fmt: skip

        def abstained(verdict: Verdict) -> Answer:
            text = abstain.abstention_text(hits, verdict)
            return Answer(
                question, text, True, [], passages, query.text, query.kind, False,
                verdict.evidence, verdict.confidence, verdict.reason,
            )  # fmt: skip

        if item is not None:
            sentences = shapes.item(self.kb, self.enumerations, item.source, item.start, self.settings.answer_max_chars)
            if sentences:
                return answer([Block(sentences)], Verdict(False, "", "", verdict.evidence, verdict.confidence))
        if verdict.abstain:
            return abstained(verdict)
        blocks = self._shape(query, hits, exclude)
        if blocks is None:
            reason = "no_metadata" if query.kind == "metadata" else "no_quotes"
            return abstained(Verdict(True, reason, "", verdict.evidence, verdict.confidence))
        checked = abstain.check_answer(query, self._quotes(blocks), self.kb, self.settings, verdict)
        if checked.abstain:
            return abstained(checked)
        return answer(blocks, checked)

    def _shape(self, query: Query, hits: list[Hit], exclude: set[tuple[str, int]]) -> list[Block] | None:
        """The blocks that answer `query`: its kind's shape, else the best sentences or list."""
        kind = query.kind
        top = hits[: self.settings.answer_passages]
        if kind != "comparison":  # a comparison quotes each side's documents itself
            top = quotable(top)
        cfg = self.settings.composer
        if kind == "metadata":
            blocks = shapes.metadata(self.kb, query, hits)
            if blocks is not None or shapes.about_a_document(query):
                return blocks  # None: the article has no quotable metadata

        if kind == "comparison":
            search = self._search if self.retriever is not None else None
            blocks = shapes.comparison(self.kb, query, top, search, self.scorer)
            if blocks is not None:
                return blocks
        if kind == "summary":
            blocks = shapes.summary(self.kb, query, top, cfg.summary_lines)
            if blocks is not None:
                return blocks
        scorer = self.scorer(query)
        ranked = scorer.candidates(top, exclude)
        if not ranked:
            return None
        if kind in ("list", "general", "how", "definition"):
            items = self.enumerations.answer(scorer, top, exclude, ranked[0].score)
            if items is not None:
                return [Block(items, as_list=True)]
        picked = select(ranked, kind, top, self.settings, query.chinese)
        if kind == "how":
            picked = shapes.extend_methods(self.kb, picked, cfg.how_follow, self.settings.answer_max_chars)
        elif kind == "number":
            picked = shapes.with_figure_before(self.kb, picked, lambda t: answers_count(query, t))
        elif kind == "time":
            picked = shapes.with_figure_before(self.kb, picked, has_time)
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

    def _quotes(self, blocks: list[Block]) -> list[Quote]:
        """What the abstention check reads: each quote with its passage, heading and title."""
        quotes = []
        for block in blocks:
            for s in block.sentences:
                document = self.kb.documents[s.source]
                chunk = next((c for c in self.kb.chunks_of(s.source) if c.start <= s.start < c.end), None)
                context = f"{document.title}\n{chunk.heading}\n{chunk.text}" if chunk else document.title
                quote = document.text[s.start : s.end]
                quotes.append(Quote(quote, f"{context}\n{quote}", document.text, document_about(document)))
        return quotes

    # --- rendering -----------------------------------------------------------------------------

    def render(self, blocks: list[Block], traditional: bool = False) -> tuple[str, list[Citation], bool]:
        """Answer text with `[n]` after each quote, in the asker's script; adjacent sentences of one
        document make one quote in prose; a heading gets a line of its own, marked as a heading."""
        script = to_traditional if traditional else to_simplified
        limit = self.settings.answer_max_chars
        citations: list[Citation] = []
        parts: list[str] = []
        used = 0
        truncated = False
        for block in blocks:
            label = f"**{script(block.label)}**：" if block.label else ""
            if not block.sentences:
                if block.note:
                    parts.append(f"{label}{block.note}")
                continue
            lines: list[str] = []
            for position, sentence in enumerate(self._merged(block)):
                document = self.kb.documents[sentence.source]
                start, end = sentence.start, sentence.end
                if block.as_list and end - start > self.settings.composer.list_item_chars:
                    end = _clause_cut(document.text, start, end, self.settings.composer.list_item_chars)
                if citations and used + (end - start) > limit:
                    truncated = True
                    break
                citation = Citation(
                    len(citations) + 1, document.source, document.title, self._heading_of(sentence),
                    document.text[start:end], start, end, sentence.chunk_id,
                )  # fmt: skip
                citations.append(citation)
                used += end - start
                shown = script(citation.quote.replace("\n", " ")) + ("…" if end < sentence.end else "")
                heading = is_heading(document.text, sentence)
                if heading and not block.as_list:
                    shown += HEADING_MARK
                indent = "  " if position in block.indent else ""
                line = f"{indent}{shown}[{citation.id}]"
                lines.append(f"\n{line}\n" if heading and not block.as_list else line)
            if block.as_list:
                body = "\n".join(lines)
                parts.append(f"{label}\n{body}" if label else body)
            else:
                parts.append(label + "".join(lines).strip("\n").replace("\n\n", "\n"))
            if truncated:
                break
        text = "\n".join(p for p in parts if p)
        if truncated:
            text += f"\n（内容较长，只列出前 {len(citations)} 条，其余见下方来源段落。）"
        return text, citations, truncated

    def _merged(self, block: Block) -> list[Sentence]:
        """Prose: adjacent sentences of one document (no heading among them) become one quote."""
        if block.as_list:
            return block.sentences
        quotes: list[Sentence] = []
        for sentence in block.sentences:
            last = quotes[-1] if quotes else None
            text = self.kb.documents[sentence.source].text
            if (
                last is not None
                and last.source == sentence.source
                and last.end <= sentence.start
                and not text[last.end : sentence.start].strip()
                and "\n" not in text[last.end : sentence.start]
                and not is_heading(text, last)
                and not is_heading(text, sentence)
            ):
                quotes[-1] = Sentence(last.source, last.start, sentence.end, last.rank, last.chunk_id, last.score)
            else:
                quotes.append(sentence)
        return quotes

    def _heading_of(self, sentence: Sentence) -> str:
        for chunk in self.kb.chunks_of(sentence.source):
            if chunk.start <= sentence.start < chunk.end:
                return chunk.heading
        return ""


def _clause_cut(text: str, start: int, end: int, limit: int) -> int:
    window = text[start : start + limit]
    cut = max(window.rfind(c) for c in "，,；;：:")
    return start + cut if cut > limit // 3 else start + limit
