"""What an answer is: `Answer` with its `Citation`s and the retrieved `Passage`s, and their JSON form.

Every citation is a verbatim span of its document's cleaned text:
`document.text[citation.start:citation.end] == citation.quote`. The answer text may show a quote in
the asker's script (a Simplified question gets Traditional quotes converted to Simplified); the
citation keeps the source's own characters and offsets. `rag.answer.compose` builds answers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from rag.model import Passage

if TYPE_CHECKING:
    from rag.answer.verify import Verdict

ABSTAIN_TEXT = "知识库中没有找到能回答这个问题的内容。"
RELATED_LABEL = "可能相关"


@dataclass
class Citation:
    """A verbatim quote from one document: `documents[source].text[start:end] == quote`."""

    id: int
    source: str
    title: str
    heading: str
    quote: str
    start: int
    end: int
    chunk_id: str = ""
    kb: str = "default"
    """The knowledge base the document is in."""

    def to_dict(self) -> dict[str, Any]:
        """The stable JSON form (README, “JSON output”)."""
        return {
            "id": self.id,
            "source": self.source,
            "title": self.title,
            "quote": self.quote,
            "start": self.start,
            "end": self.end,
            "kb": self.kb,
        }

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> Citation:
        """A citation back from its JSON form (one written before knowledge bases is in `default`)."""
        return cls(
            int(record["id"]),
            str(record["source"]),
            str(record.get("title", "")),
            str(record.get("heading", "")),
            str(record["quote"]),
            int(record["start"]),
            int(record["end"]),
            str(record.get("chunk_id", "")),
            str(record.get("kb") or "default"),
        )


@dataclass
class Answer:
    """An answer with `[n]` markers into `citations`, or an abstention."""

    question: str
    answer: str
    abstained: bool
    citations: list[Citation] = field(default_factory=list)
    passages: list[Passage] = field(default_factory=list)
    standalone_question: str = ""
    """The question as searched, after a follow-up was completed from the conversation."""
    kind: str = "general"
    truncated: bool = False
    evidence: float = 0.0
    """Share of the question's key terms (IDF-weighted) that the best passage covers."""
    confidence: float = 0.0
    """Evidence adjusted by semantic closeness; below `Settings.abstain_below` the answer abstains."""
    reason: str = ""
    """Why an abstention abstained (`rag.answer.abstain.Verdict.reason`); empty for an answer."""
    mode: str = "extractive"
    """`generated` (written by the language model, every sentence verified) or `extractive`."""
    generation: Generation | None = None
    """What happened with the language model, when one is configured (`rag.answer.writer`)."""
    earlier: list[Citation] = field(default_factory=list, repr=False)
    """What earlier answers to the same question gave, when this one continues them (还有呢): the next
    continuation leaves those out too. Kept with the conversation, not in the JSON form."""
    judged: float | None = None
    """The answer judge's highest probability that a found sentence answers the question (None: the
    judge did not decide: off, still loading, a kind its rules decide, an enumerated list (the rules'
    answer), or refused by the rules before it was needed)."""

    def to_dict(self) -> dict[str, Any]:
        """The stable JSON form (README, “JSON output”)."""
        return {
            "question": self.question,
            "standalone_question": self.standalone_question or self.question,
            "answer": self.answer,
            "abstained": self.abstained,
            "kind": self.kind,
            "citations": [c.to_dict() for c in self.citations],
            "passages": [p.to_dict() for p in self.passages],
            "mode": self.mode,
            "generation": self.generation.to_dict() if self.generation is not None else None,
            "judged": None if self.judged is None else round(self.judged, 4),
        }

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> Answer:
        """An answer back from its JSON form (enough of it to continue a conversation)."""
        return cls(
            str(record.get("question", "")),
            str(record.get("answer", "")),
            bool(record.get("abstained", False)),
            [Citation.from_dict(c) for c in record.get("citations", [])],
            [],
            str(record.get("standalone_question") or record.get("question", "")),
            str(record.get("kind", "general")),
        )


@dataclass
class Generation:
    """What happened when the answer was (to be) written by the model."""

    model: str
    sentences: int = 0
    """Sentences the model wrote (reference-list lines not counted)."""
    kept: int = 0
    dropped: int = 0
    recited: int = 0
    """Kept sentences whose citation was corrected (a wrong number, or none given)."""
    fell_back: bool = False
    """The extractive answer is shown instead of the written one."""
    reason: str = ""
    """Why it fell back, or why the model was not asked (English, for logs and reports)."""
    note: str = ""
    """What to tell the reader (Chinese): the fallback, or how many sentences were removed."""
    seconds: float = 0.0
    drop_reasons: dict[str, int] = field(default_factory=dict)
    verdicts: list[Verdict] = field(default_factory=list, repr=False)
    """Every sentence's verdict (kept and dropped), for evaluation and debugging; not in `to_dict`."""

    def to_dict(self) -> dict[str, object]:
        return {
            "model": self.model,
            "sentences": self.sentences,
            "kept": self.kept,
            "dropped": self.dropped,
            "recited": self.recited,
            "drop_reasons": dict(self.drop_reasons),
            "fell_back": self.fell_back,
            "reason": self.reason,
            "note": self.note,
            "seconds": round(self.seconds, 3),
        }
