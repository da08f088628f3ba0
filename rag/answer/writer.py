"""Written answers: the grounded prompt, and the model's answer checked sentence by sentence.

The extractive answer comes first. When it abstains, the model is not asked. Otherwise the model
gets the top passages as numbered sources, and each sentence of its answer is kept only when a quote
of a passage supports it (`rag.answer.verify`); a kept sentence cites that quote, verbatim with its offsets,
like an extractive citation. When the server fails or runs past `llm_timeout`, when the model says
the sources do not answer, or when too much of the answer is dropped, the extractive answer is shown
instead, with a note that says so. The reply is read as plain text (HTML stripped), at most
`llm_max_chars` of it, and a sentence repeated is checked and shown once.
"""

from __future__ import annotations

import html
import logging
import re
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, replace

from rag.answer.llm_client import ChatClient, LLMError, Message
from rag.answer.types import ABSTAIN_TEXT, Answer, Citation, Generation
from rag.answer.verify import Piece, Source, Verdict, Verifier, split_sentences
from rag.config import Settings
from rag.model import Document, Passage
from rag.text.normalize import compact, normalize, to_simplified

log = logging.getLogger(__name__)

NOTE_SERVER = "语言模型服务暂时无法使用，以下是从原文摘录的回答。"
NOTE_UNVERIFIED = "生成的回答未能通过原文核对，以下是从原文摘录的回答。"
NOTE_DROPPED = "已删去 {n} 句无法在原文中核实的内容。"
NOTE_REFUSED = "语言模型认为资料不足以回答这个问题，以下是从原文摘录的回答，请对照原文判断。"
NOTE_CUT = "生成的回答过长，只核对并显示了前面的部分。"

#: A sentence saying the sources do not answer, in any wording a model uses for it.
_REFUSAL = re.compile(
    r"(?:知识库|资料|材料|来源|文件|文档|上述|所给|提供的|参考|原文).{0,15}"
    r"(?:没有|未|并未|无法|不能|不).{0,6}(?:找到|提及|提到|涉及|包含|说明|回答|给出|记载|明确|相关)"
    r"|^(?:很?抱歉|对不起)|(?:无法|不能|难以)(?:回答|作答|确定|判断|提供)|我(?:并)?不(?:知道|清楚|确定)"
    r"|(?:没有|未)(?:找到|检索到|查到)?(?:相关|有关)的?(?:信息|内容|资料)"
)
_PARTIAL_MARKER = re.compile(r"^[ \t]*[\[【][\d\s,，、]*$")
_TAG = re.compile(r"<(?:/?[A-Za-z][A-Za-z0-9:-]*(?:\s[^<>]*)?/?|!--.*?--|![A-Za-z][^<>]*)>", re.S)
_BREAK = re.compile(r"<(?:br|/p|/div|/li|/h[1-6]|/tr)\b[^<>]*>", re.I)
#: The end of a piece that may be the start of a tag (spelled out as `&lt;…` too) or of an entity.
_UNFINISHED = re.compile(r"(?:<|&lt;)(?:(?!>|&gt;).){0,200}$|&#?[A-Za-z0-9]{0,10}$", re.S | re.I)

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
        reply = _Reply(self.settings.llm_max_chars)
        try:
            sentences = SentenceStream()
            chunks = self.client.stream(prompt) if stream else iter([self.client.complete(prompt)])
            for text in reply.read(chunks):
                for piece in sentences.feed(text):
                    delta = draft.add(piece, self.verifier)
                    if delta is not None:
                        yield delta
            tail = sentences.close()
            for piece in tail[:-1] if reply.cut else tail:  # the sentence the cap cut into is not checked
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
        yield Final(draft.finish(extractive, record, self.settings, started, cut=reply.cut))


def refuses(text: str) -> bool:
    """Whether a written sentence says the sources do not answer (资料中没有提到…, 抱歉，无法回答…)."""
    return bool(_REFUSAL.search(normalize(text)))


def strip_html(text: str) -> str:
    """`text` without HTML: line-ending tags become line breaks, other tags go, entities are unescaped
    (and the tags they spelled out go too)."""
    text = html.unescape(_TAG.sub("", _BREAK.sub("\n", text)))
    return _TAG.sub("", _BREAK.sub("\n", text))


class _Reply:
    """The model's reply as it arrives: plain text (HTML stripped, a tag or entity split over pieces
    held back until complete), cut after `limit` characters; reading stops there."""

    def __init__(self, limit: int) -> None:
        self.limit, self.received, self.cut = limit, 0, False
        self._held = ""

    def read(self, chunks: Iterator[str]) -> Iterator[str]:
        try:
            for chunk in chunks:
                room = self.limit - self.received
                self.received += len(chunk)
                if len(chunk) > room:
                    chunk, self.cut = chunk[:room], True
                text, self._held = self._held + chunk, ""
                unfinished = None if self.cut else _UNFINISHED.search(text)
                if unfinished:
                    text, self._held = text[: unfinished.start()], text[unfinished.start() :]
                if text:
                    yield strip_html(text)
                if self.cut:
                    break
            if self._held and not self.cut:
                yield strip_html(self._held)
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()  # a streamed reply stops being read (its connection is closed)


class SentenceStream:
    """Sentences of a text that arrives in pieces: each is given once it cannot change any more."""

    def __init__(self) -> None:
        self.text = ""
        self._done = 0

    def feed(self, more: str) -> list[Piece]:
        """Add text; the sentences it completed."""
        self.text += more
        ready = []
        for piece in split_sentences(self.text, self._done):
            rest = self.text[piece.end :]
            if not rest.strip(" \t") or _PARTIAL_MARKER.match(rest):
                break  # it may still grow, or a marker may still follow it
            ready.append(piece)
            self._done = piece.end
        return ready

    def close(self) -> list[Piece]:
        """The sentences left when the text is complete."""
        pieces = split_sentences(self.text, self._done)
        self._done = len(self.text)
        return pieces


class _Draft:
    """The written answer as its sentences are checked: text, citations, counts."""

    def __init__(self, sources: list[Source]) -> None:
        self.sources = sources
        self.verdicts: list[Verdict] = []
        self.text = ""
        self.citations: list[Citation] = []
        self.seen: set[str] = set()
        self.repeated = 0

    def add(self, piece: Piece, verifier: Verifier) -> Delta | None:
        """Check one sentence; the text it adds to the answer when it is kept. A sentence said before
        is neither checked nor shown again."""
        if piece.is_reference:
            return None
        key = compact(piece.claim)
        if key in self.seen:
            self.repeated += 1
            return None
        self.seen.add(key)
        verdict = Verdict(piece, reason="not_found") if refuses(piece.claim) else verifier.check(piece, self.sources)
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

    def finish(self, extractive: Answer, record: Generation, settings: Settings, started: float, cut: bool) -> Answer:
        verdicts = self.verdicts
        counted = [v for v in verdicts if v.reason != "not_found"]
        record.verdicts = verdicts
        record.sentences = len(verdicts)
        record.kept = sum(v.kept for v in verdicts)
        record.dropped = record.sentences - record.kept
        record.recited = sum(v.recited for v in verdicts if v.kept)
        record.drop_reasons = dict(Counter(v.reason for v in verdicts if not v.kept))
        record.seconds = time.perf_counter() - started
        if self.repeated or cut:
            log.info("written answer: %d repeated sentences skipped, cut at the cap: %s", self.repeated, cut)
        if not record.kept and any(v.reason == "not_found" for v in verdicts):
            # The extractive answer exists (the model is asked only then): the model's refusal does not
            # turn an answerable question into a refusal.
            record.reason = "the model found no answer in the sources"
            return _fallback(extractive, record, NOTE_REFUSED, started)
        if not record.kept:
            record.reason = "the model wrote nothing" if not verdicts else "no written sentence passed the checks"
            return _fallback(extractive, record, NOTE_UNVERIFIED, started)
        failed = sum(not v.kept for v in counted)
        if counted and failed / len(counted) > settings.verify_max_dropped:
            record.reason = f"{failed} of {len(counted)} written sentences failed the checks"
            return _fallback(extractive, record, NOTE_UNVERIFIED, started)
        notes = [NOTE_DROPPED.format(n=record.dropped)] if record.dropped else []
        record.note = "".join(notes + ([NOTE_CUT] if cut else []))
        return replace(
            extractive,
            answer=self.text.strip(),
            citations=list(self.citations),
            mode="generated",
            generation=record,
            truncated=cut,
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
