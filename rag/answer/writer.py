"""Written answers: the grounded prompt, and the model's answer checked sentence by sentence.

The extractive answer comes first. When it abstains, the model is not asked. Otherwise the model
gets the top passages as numbered sources, and each sentence of its answer is kept only when a quote
of a passage supports it (`rag.answer.verify`); a kept sentence cites that quote, verbatim with its offsets,
like an extractive citation. When the server fails, or too much of the answer is dropped, the
extractive answer is shown instead, with a note that says so.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, replace

from rag.answer.abstain import abstention_text
from rag.answer.llm_client import ChatClient, LLMError, Message
from rag.answer.types import ABSTAIN_TEXT, Answer, Citation, Generation
from rag.answer.verify import Piece, SentenceStream, Source, Verdict, Verifier, split_sentences
from rag.config import Settings
from rag.model import Document, Passage
from rag.text.normalize import to_simplified

log = logging.getLogger(__name__)

NOTE_SERVER = "语言模型服务暂时无法使用，以下是从原文摘录的回答。"
NOTE_UNVERIFIED = "生成的回答未能通过原文核对，以下是从原文摘录的回答。"
NOTE_DROPPED = "已删去 {n} 句无法在原文中核实的内容。"

SYSTEM_PROMPT = """你是政策文件问答助手，只能依据用户给出的编号资料回答问题。
规则：
1. 只使用资料中的内容，不要加入资料以外的知识、推测或评价。
2. 每句话的末尾用方括号标注所依据资料的编号，例如：……。[1] 一句话依据多条资料时写作[1][2]。
3. 数字、日期、文件名称、条款和地名、机构名照原文写，不要换算或改写。
4. 如果资料不能回答这个问题，只回答：“{abstain}”
5. {language}
6. 回答简洁，不要列出参考资料清单，不要重复问题。"""


@dataclass
class Delta:
    """Verified text to append to the answer being shown, with the citations it introduces."""

    text: str
    citations: list[Citation]


@dataclass
class Final:
    """The finished answer: the verified written one, or the extractive one it fell back to."""

    answer: Answer


Event = Delta | Final


def language_rule(question: str) -> str:
    """The prompt's rule for the answer's language: the asker's (Traditional when asked in Traditional)."""
    if not any("\u3400" <= ch <= "\u9fff" for ch in question):
        return "用提问所用的语言回答，人名、地名、机构名和文件名保留中文原文。"
    if to_simplified(question) != question:
        return "用繁体中文回答。"
    return "用简体中文回答。"


def messages(question: str, standalone: str, sources: list[Source]) -> list[Message]:
    """The grounded prompt: rules, the numbered sources, the question (and its standalone form)."""
    blocks = []
    for s in sources:
        where = f"《{s.passage.title}》" + (f" {s.passage.heading}" if s.passage.heading else "")
        blocks.append(f"[{s.number}] {where}\n{s.passage.text.strip()}")
    asked = f"问题：{question}"
    if standalone and standalone.strip() != question.strip():
        asked = f"问题（对话中的追问）：{question}\n结合上文，问题是：{standalone}"
    user = "资料：\n" + "\n\n".join(blocks) + f"\n\n{asked}\n请依据资料回答，每句末尾标注资料编号。"
    return [
        {"role": "system", "content": SYSTEM_PROMPT.format(abstain=ABSTAIN_TEXT, language=language_rule(question))},
        {"role": "user", "content": user},
    ]


def sources_for(passages: list[Passage], documents: Mapping[str, Document], limit: int) -> list[Source]:
    """The first `limit` passages, numbered from 1, with their documents (a passage whose document
    left the index meanwhile is skipped)."""
    found = [(p, documents.get(p.source)) for p in passages[:limit]]
    return [Source(n, p, d) for n, (p, d) in enumerate(((p, d) for p, d in found if d is not None), 1)]


class Writer:
    """Written answers from one model, checked against the sources."""

    def __init__(self, client: ChatClient, verifier: Verifier, settings: Settings) -> None:
        self.client, self.verifier, self.settings = client, verifier, settings

    def answer(self, extractive: Answer, documents: Mapping[str, Document]) -> Answer:
        """The written, verified answer (asked without streaming), or `extractive` with a note."""
        final = None
        for event in self._run(extractive, documents, stream=False):
            if isinstance(event, Final):
                final = event.answer
        assert final is not None
        return final

    def stream(self, extractive: Answer, documents: Mapping[str, Document]) -> Iterator[Event]:
        """`Delta`s of verified text as the model writes, then the `Final` answer."""
        return self._run(extractive, documents, stream=True)

    def _run(self, extractive: Answer, documents: Mapping[str, Document], stream: bool) -> Iterator[Event]:
        started = time.perf_counter()
        record = Generation(self.client.model or "")
        if extractive.abstained:
            record.reason = "not asked: the knowledge base has no evidence for this question"
            yield Final(replace(extractive, generation=record))
            return
        sources = sources_for(extractive.passages, documents, self.settings.llm_passages)
        prompt = messages(extractive.question, extractive.standalone_question, sources)
        draft = _Draft(sources)
        try:
            if stream:
                sentences = SentenceStream()
                for text in self.client.stream(prompt):
                    for piece in sentences.feed(text):
                        delta = draft.add(piece, self.verifier)
                        if delta is not None:
                            yield delta
                tail = sentences.close()
            else:
                tail = split_sentences(self.client.complete(prompt))
            for piece in tail:
                delta = draft.add(piece, self.verifier)
                if delta is not None:
                    yield delta
        except LLMError as exc:
            log.warning("written answer failed, showing the extractive one: %s", exc)
            record.reason = f"server: {exc}"
            yield Final(_fallback(extractive, record, NOTE_SERVER, started))
            return
        except Exception as exc:  # a reader gets the extractive answer, never a traceback
            log.exception("checking the written answer failed, showing the extractive one")
            record.reason = f"error: {type(exc).__name__}: {exc}"
            yield Final(_fallback(extractive, record, NOTE_UNVERIFIED, started))
            return
        record.model = self.client.model
        yield Final(draft.finish(extractive, record, self.settings, started))


class _Draft:
    """The written answer as its sentences are checked: text, citations, counts."""

    def __init__(self, sources: list[Source]) -> None:
        self.sources = sources
        self.verdicts: list[Verdict] = []
        self.text = ""
        self.citations: list[Citation] = []

    def add(self, piece: Piece, verifier: Verifier) -> Delta | None:
        """Check one sentence; the text it adds to the answer when it is kept."""
        if piece.is_reference:
            return None
        verdict = verifier.check(piece, self.sources)
        self.verdicts.append(verdict)
        if not verdict.kept:
            log.debug("dropped (%s): %s", verdict.reason, piece.text)
            return None
        new: list[Citation] = []
        ids = []
        for support in verdict.supports:
            citation = next(
                (
                    c
                    for c in self.citations
                    if (c.source, c.start, c.end) == (support.source.passage.source, support.start, support.end)
                ),
                None,
            )
            if citation is None:
                p = support.source.passage
                citation = Citation(
                    len(self.citations) + 1,
                    p.source,
                    p.title,
                    p.heading,
                    support.quote,
                    support.start,
                    support.end,
                    p.chunk_id,
                )
                self.citations.append(citation)
                new.append(citation)
            ids.append(citation.id)
        markers = "".join(f"[{i}]" for i in dict.fromkeys(ids))
        text = f"{piece.display}{markers}" + ("\n" if piece.line_end else "")
        self.text += text
        return Delta(text, new)

    def finish(self, extractive: Answer, record: Generation, settings: Settings, started: float) -> Answer:
        verdicts = self.verdicts
        counted = [v for v in verdicts if v.reason != "not_found"]
        record.verdicts = verdicts
        record.sentences = len(verdicts)
        record.kept = sum(v.kept for v in verdicts)
        record.dropped = record.sentences - record.kept
        record.recited = sum(v.recited for v in verdicts if v.kept)
        record.drop_reasons = dict(Counter(v.reason for v in verdicts if not v.kept))
        record.seconds = time.perf_counter() - started
        if not record.kept and any(v.reason == "not_found" for v in verdicts):
            record.reason = "the model found no answer in the sources"
            text = abstention_text(extractive.passages, settings)
            return replace(
                extractive,
                answer=text,
                abstained=True,
                citations=[],
                mode="generated",
                generation=record,
                truncated=False,
            )
        if not record.kept:
            record.reason = "the model wrote nothing" if not verdicts else "no written sentence passed the checks"
            return _fallback(extractive, record, NOTE_UNVERIFIED, started)
        failed = sum(not v.kept for v in counted)
        if counted and failed / len(counted) > settings.verify_max_dropped:
            record.reason = f"{failed} of {len(counted)} written sentences failed the checks"
            return _fallback(extractive, record, NOTE_UNVERIFIED, started)
        if record.dropped:
            record.note = NOTE_DROPPED.format(n=record.dropped)
        return replace(
            extractive,
            answer=self.text.strip(),
            citations=list(self.citations),
            mode="generated",
            generation=record,
            truncated=False,
        )


def _fallback(extractive: Answer, record: Generation, note: str, started: float) -> Answer:
    record.fell_back = True
    record.note = note
    record.seconds = time.perf_counter() - started
    return replace(extractive, mode="extractive", generation=record)


def generation_metrics(answers: Iterable[Answer | None]) -> dict[str, object]:
    """What `rag eval --llm` reports beside the usual figures: how often the model was asked, how
    many of its sentences were kept and dropped (and why), and how often the answer fell back."""
    records = [a.generation for a in answers if a is not None and a.generation is not None]
    asked = [g for g in records if not g.reason.startswith("not asked")]
    sentences = sum(g.sentences for g in asked)
    fell_back = [g for g in asked if g.fell_back]
    reasons: Counter[str] = Counter()
    for g in asked:
        reasons.update(g.drop_reasons)
    return {
        "asked": len(asked),
        "not_asked_abstained": len(records) - len(asked),
        "sentences": sentences,
        "kept": sum(g.kept for g in asked),
        "dropped": sum(g.dropped for g in asked),
        "recited": sum(g.recited for g in asked),
        "kept_share": round(sum(g.kept for g in asked) / sentences, 4) if sentences else None,
        "drop_reasons": dict(reasons),
        "fell_back_share": round(len(fell_back) / len(asked), 4) if asked else None,
        "fell_back_server": sum(g.reason.startswith("server") for g in fell_back),
        "model_abstained": sum(g.reason == "the model found no answer in the sources" for g in asked),
        "seconds_p50": _median([g.seconds for g in asked]),
    }


def _median(values: list[float]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    middle = len(ordered) // 2
    return round(ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2, 3)
