"""Answer text from chosen quotes: each quote verbatim with its `[n]` citation, in the asker's script.

Adjacent sentences of one document make one quote in prose; a heading gets a line of its own,
marked as a heading; a list shows one item a line (a long item cut after a clause); past
`Settings.answer_max_chars` the answer stops and says so. A citation keeps the source's own
characters and offsets: `document.text[citation.start:citation.end] == citation.quote`.
"""

from __future__ import annotations

from collections.abc import Callable

from rag.answer.scoring import Sentence, is_heading
from rag.answer.shapes import Block
from rag.answer.types import Citation
from rag.config import Settings
from rag.index.knowledge_base import KnowledgeBase
from rag.text.normalize import to_simplified, to_traditional

HEADING_MARK = "（标题）"


def render(
    kb: KnowledgeBase, settings: Settings, blocks: list[Block], traditional: bool = False
) -> tuple[str, list[Citation], bool]:
    """Answer text with `[n]` after each quote, its citations, and whether it was cut short."""
    script = to_traditional if traditional else to_simplified
    citations: list[Citation] = []
    parts: list[str] = []
    truncated = False
    for block in blocks:
        label = f"**{script(block.label)}**：" if block.label else ""
        if not block.sentences:
            if block.note:
                parts.append(f"{label}{block.note}")
            continue
        lines, truncated = _cite(kb, settings, block, script, citations)
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


def _cite(
    kb: KnowledgeBase, settings: Settings, block: Block, script: Callable[[str], str], citations: list[Citation]
) -> tuple[list[str], bool]:
    """The lines of one block, each quote added to `citations`; True when the length budget ran out."""
    limit, item_chars = settings.answer_max_chars, settings.composer.list_item_chars
    used = sum(c.end - c.start for c in citations)
    lines: list[str] = []
    for position, sentence in enumerate(_merged(kb, block)):
        document = kb.documents[sentence.source]
        start, end = sentence.start, sentence.end
        if block.as_list and end - start > item_chars:
            end = _clause_cut(document.text, start, end, item_chars)
        if citations and used + (end - start) > limit:
            return lines, True
        citation = Citation(
            len(citations) + 1, document.source, document.title, _heading_of(kb, sentence),
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
    return lines, False


def _merged(kb: KnowledgeBase, block: Block) -> list[Sentence]:
    """Prose: adjacent sentences of one document (no heading among them) become one quote."""
    if block.as_list:
        return block.sentences
    quotes: list[Sentence] = []
    for sentence in block.sentences:
        last = quotes[-1] if quotes else None
        text = kb.documents[sentence.source].text
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


def _heading_of(kb: KnowledgeBase, sentence: Sentence) -> str:
    for chunk in kb.chunks_of(sentence.source):
        if chunk.start <= sentence.start < chunk.end:
            return chunk.heading
    return ""


def _clause_cut(text: str, start: int, end: int, limit: int) -> int:
    """Where a list item longer than `limit` is cut: after its last clause past a third of it."""
    window = text[start : start + limit]
    cut = max(window.rfind(c) for c in "，,；;：:")
    return start + cut if cut > limit // 3 else start + limit
