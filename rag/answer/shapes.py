"""Answer shapes beyond "the best sentences": comparison, summary, how-to, metadata, a list item.

Each shape returns `Block`s — quotes with an optional label (`天津`, `《…》`, `作者`) — that the
composer renders with citations, or None when it has nothing to offer (the composer then answers
the usual way or abstains). Everything quoted is still a verbatim span of a document.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from rag.answer.enumerations import DEFINES_TERM, Enumerations, with_what_follows
from rag.answer.evidence import coverage, mentions, term_weights
from rag.answer.metadata import LABELS, in_metadata, meta_spans, wanted_keys
from rag.answer.scoring import Reading, Sentence, select
from rag.config import Settings
from rag.index.knowledge_base import KnowledgeBase
from rag.ingest.chunk import heading_level
from rag.model import Document, Hit, Span
from rag.query.question import Query, compares
from rag.text.normalize import compact
from rag.text.tokenize import key_terms

#: A sentence that announces the method set out after it (…组合拳。 / …下功夫。 / …如下：).
_ANNOUNCES_METHOD = re.compile(r"[:：]$|组合拳|如下|以下|下功夫|几个方面|几点|重点抓|着力|主要做法|具体做法|坚持做到")
#: A sentence that carries on the one before it: a defined term (“一本”即…), an item, a means.
_ELABORATES = re.compile(
    rf"^(?:{DEFINES_TERM.pattern}|一是|首先|第一|其一|具体|通过|其中|一方面|[(（]一[)）]|1[.、．])"
)
#: Metadata keys whose value is a name a question may name an article by; and a publication's name.
_NAMES_IN_META = ("author", "photographer")
_PUBLICATION = re.compile(r"《([^》]{2,20})》")
_NAMED_DOCUMENT = re.compile(r"那篇|这篇|该文|本文|一文|文章|材料|报道|稿件|\barticle\b|\bpiece\b")


def about_a_document(query: Query) -> bool:
    """Whether the question is about an article itself (`那篇文章的作者`), not about its content."""
    return bool(_NAMED_DOCUMENT.search(query.normalized))


@dataclass
class Block:
    """Quotes shown together: under a label, as prose or one per line, or a note when empty."""

    sentences: list[Sentence]
    label: str = ""
    as_list: bool = False
    note: str = ""
    indent: set[int] = field(default_factory=set)
    """Positions (in `sentences`) of sub-items shown indented under the line before."""


Search = Callable[..., list[Hit]]
"""`search(question, k=None)`: the hits of a question (a comparison searches each side)."""


# --- how-to ----------------------------------------------------------------------------------------


def extend_methods(reading: Reading, picked: list[Sentence]) -> list[Sentence]:
    """How-to answers: a quote that announces a method (or is followed by its items or defined
    terms) brings the following sentences of its paragraph, up to `ComposerSettings.how_follow` of
    them and `Settings.answer_max_chars` in all."""
    follow, budget = reading.settings.composer.how_follow, reading.settings.answer_max_chars
    used = sum(s.end - s.start for s in picked)
    out: list[Sentence] = []
    for sentence in picked:
        if any(o.source == sentence.source and o.start <= sentence.start < o.end for o in out):
            continue  # already inside an extended quote
        document = reading.kb.documents[sentence.source]
        text = document.text
        line_end = text.find("\n", sentence.end)
        line_end = len(text) if line_end < 0 else line_end
        after = reading.sentences(document, sentence.end, line_end)[:follow]
        own = text[sentence.start : sentence.end].strip()
        if after and (_ANNOUNCES_METHOD.search(own) or _ELABORATES.match(text[after[0].start : after[0].end])):
            end = sentence.end
            for span in after:
                if used + span.end - end > budget:
                    break
                used += span.end - end
                end = span.end
            sentence = Sentence(sentence.source, sentence.start, end, sentence.rank, sentence.chunk_id, sentence.score)
        out.append(sentence)
    return [s for s in out if not any(o is not s and o.source == s.source and o.start <= s.start < o.end for o in out)]


# --- figures and dates ----------------------------------------------------------------------------


def with_figure_before(reading: Reading, picked: list[Sentence], wanted: Callable[[str], bool]) -> list[Sentence]:
    """A 多少/何时 answer whose first quote lacks the figure or date, while the sentence before it
    in its paragraph gives one (`1256年夏天，…。忽必烈率军抵达…`), is quoted from that sentence on."""
    if not picked:
        return picked
    head = picked[0]
    document = reading.kb.documents[head.source]
    text = document.text
    if wanted(text[head.start : head.end]):
        return picked
    line_start = text.rfind("\n", 0, head.start) + 1
    before = reading.sentences(document, line_start, head.start)
    if before and wanted(text[before[-1].start : before[-1].end]):
        start = before[-1].start
        rest = [s for s in picked[1:] if not (s.source == head.source and start <= s.start < head.end)]
        return [Sentence(head.source, start, head.end, head.rank, head.chunk_id, head.score), *rest]
    return picked


# --- comparison ------------------------------------------------------------------------------------


def comparison(reading: Reading, hits: list[Hit], search: Search | None) -> list[Block] | None:
    """One labelled block per side: `**A**：…[n]` / `**B**：…[m]`, each side searched on its own;
    a side the corpus says nothing about gets a note. Without named sides (两篇材料…有什么异同)
    the two best-ranked documents are the sides."""
    query, cfg = reading.query, reading.settings.composer
    limit = cfg.side_sentences
    limited = _limited_settings(reading.settings, limit)
    if query.sides is None:
        compared = search(query.normalized, cfg.compared_passages) if search else hits
        return _documents_compared(reading, compared, limited, limit)
    sides = [query.sides, query.sides[::-1]]
    found = [_side_candidates(reading, side, other, search, hits) for side, other in sides]
    claimed = [{s.source for s in named} for named, _, _ in found]
    blocks: list[Block] = []
    taken: set[tuple[str, int]] = set()
    for i, ((side, _other), (named, ranked, documents)) in enumerate(zip(sides, found, strict=True)):
        if not any(s.coverage > 0 for s in named):
            # no sentence names the side and says something on the topic: the sentences of the
            # document about the side (not the other side's), else those that only name it
            others = claimed[1 - i] or {d for d, _ in found[1 - i][2][:1]}
            document = next((d for d, about in documents if about and d not in others), None)
            named = [s for s in ranked if s.source == document] or named
        else:  # those that name the side off the topic (a photo caption) are no answer
            named = [s for s in named if s.coverage > 0]
        named = [s for s in named if s.key not in taken]
        picked = select(named, "general", hits, limited)[:limit] if named else []
        picked = with_what_follows(reading, picked, reading.settings.answer_max_chars // len(sides))
        taken.update(s.key for s in picked)
        note = "" if picked else f"知识库中没有找到关于“{side}”的内容。"
        blocks.append(Block(picked, label=side, note=note))
    return blocks if any(b.sentences for b in blocks) else None


def _side_question(normalized: str, side: str, other: str) -> str:
    """The comparison question asked about one side: the other side and its conjunction taken out."""
    text = re.sub(
        rf"(?:和|与|跟|同|及|以及|、)?\s*{re.escape(other)}\s*(?:和|与|跟|同|及|以及|、)?", " ", normalized, count=1
    )
    return text if side in text else f"{side} {text}"


def _side_candidates(
    reading: Reading, side: str, other: str, search: Search | None, hits: list[Hit]
) -> tuple[list[Sentence], list[Sentence], list[tuple[str, bool]]]:
    """A side's sentences that name it, all its candidate sentences, and the documents of its own
    search, most about it first (most of its key terms, then rank), each with whether it is about
    the side at all (`ComposerSettings.side_about_coverage` of its key terms, counted alike)."""
    kb, query, about_share = reading.kb, reading.query, reading.settings.composer.side_about_coverage
    side_hits = search(_side_question(query.normalized, side, other)) if search else hits
    side_terms = key_terms(side) or [side]
    other_terms = key_terms(other)
    topic = [
        t
        for t in query.key_terms
        if not compares(t)  # 不同, 异同: how the question is asked; 那篇, 文章: the sides' documents
        and not _NAMED_DOCUMENT.search(t)
        and not any(t in s or s in t for s in (side, other, *other_terms))
    ]
    passages = compact("\n".join(h.chunk.text for h in side_hits))
    topic = [t for t in topic if t in passages]  # a word none of them has tells no sentence from another
    scorer = reading.scorer(topic or side_terms)
    ranked = scorer.candidates(side_hits)
    named = [s for s in ranked if mentions(side, compact(kb.documents[s.source].text[s.start : s.end]))]
    for sentence in named:  # `天津市建立“五必谈”制度…` in a paragraph on 督责机制 is on the topic
        if sentence.coverage == 0:
            text = kb.documents[sentence.source].text
            sentence.coverage = scorer.cover(text[text.rfind("\n", 0, sentence.start) + 1 : sentence.end])
    sources = list(dict.fromkeys(h.chunk.source for h in side_hits))
    about = {s: coverage(side_terms, [1.0] * len(side_terms), _document_text(kb.documents[s])) for s in sources}
    documents = sorted(sources, key=lambda s: (about[s] < about_share, sources.index(s)))
    return named, ranked, [(s, about[s] >= about_share) for s in documents]


def _documents_compared(reading: Reading, hits: list[Hit], limited: Settings, limit: int) -> list[Block] | None:
    """The two best-ranked documents of `hits` side by side, up to `limit` quotes each."""
    topic = [t for t in reading.query.key_terms if not compares(t) and not _NAMED_DOCUMENT.search(t)]
    scorer = reading.scorer(topic or None)
    sources = list(dict.fromkeys(h.chunk.source for h in hits))[:2]
    if len(sources) < 2:
        return None
    ranked = scorer.candidates(hits)
    blocks = []
    for source in sources:
        own = [s for s in ranked if s.source == source]
        if own:
            picked = select(own, "general", hits, limited)[:limit]
            blocks.append(Block(picked, label=f"《{reading.kb.documents[source].title}》"))
    return blocks if len(blocks) == 2 else None


def _limited_settings(settings: Settings, limit: int) -> Settings:
    """`settings` with at most `limit` quotes for any kind of question."""
    cfg = dataclasses.replace(settings.composer, sentences=limit, short_sentences=limit, why_sentences=limit)
    return settings.replace(composer=cfg)


# --- summary ---------------------------------------------------------------------------------------


def summary(reading: Reading, hits: list[Hit]) -> list[Block] | None:
    """The structure of the document the question names (or retrieval ranks first), or of the
    section it names: headings with their sub-item leads, else the lead sentence of each paragraph,
    in order (at most `ComposerSettings.summary_lines`); a one-paragraph section gives its first
    `summary_paragraph_sentences` sentences."""
    if not hits:
        return None
    kb, cfg = reading.kb, reading.settings.composer
    max_lines = cfg.summary_lines
    document, section = _summary_target(reading, hits)
    text = document.text
    start, end = (0, len(text)) if section is None else section
    lines = [s for s in _lines(text, start, end) if not in_metadata(document, s.start, s.end)]
    if section is not None and lines and lines[0].start == section[0]:
        lines = lines[1:]  # the section's own heading is the question
    if not lines:
        return None
    rank = next((h.rank for h in hits if h.chunk.source == document.source), len(hits) + 1)
    chunk_of = _chunk_finder(kb, document.source)
    items: list[Span] = []
    indent: set[int] = set()
    level1 = [s for s in lines if heading_level(text[s.start : s.end]) == 1]
    level2 = [s for s in lines if heading_level(text[s.start : s.end]) == 2]
    if len(level1) >= 2:
        if lines[0] is not level1[0] and section is None:
            items.append(_first_sentence(reading, document, lines[0]))
        for line in lines:
            level = heading_level(text[line.start : line.end])
            if level == 1:
                items.append(line)
            elif level == 2:
                indent.add(len(items))
                items.append(_first_sentence(reading, document, line))
        if len(items) > max_lines:  # too long: the headings alone
            items, indent = [s for s in items if s in level1], set()
    elif len(level2) >= 2:
        items = [_first_sentence(reading, document, s) for s in level2]
    elif len(lines) >= 2:
        items = [_first_sentence(reading, document, s) for s in lines]
    else:
        items = reading.sentences(document, lines[0].start, lines[0].end)[: cfg.summary_paragraph_sentences]
    items = items[:max_lines]
    sentences = [Sentence(document.source, s.start, s.end, rank, chunk_of(s.start)) for s in items]
    return [Block(sentences, as_list=True, indent=indent)]


def _summary_target(reading: Reading, hits: list[Hit]) -> tuple[Document, tuple[int, int] | None]:
    """The document (and section, as offsets) a summary question is about: one it names in 《》, one
    with a section it quotes, else the one of the top `Settings.evidence_passages` that covers most."""
    kb, query = reading.kb, reading.query
    documents = list(kb.documents.values())
    for title in query.titles:
        named = [d for d in documents if compact(title) in compact(d.title) or compact(d.title) in compact(title)]
        if named:
            return named[0], _named_section(named[0], query)
    for document in (kb.documents[s] for s in dict.fromkeys(h.chunk.source for h in hits)):
        section = _named_section(document, query)
        if section is not None:
            return document, section
    candidates = list(dict.fromkeys(h.chunk.source for h in hits[: reading.settings.evidence_passages]))
    terms = [t for t in query.key_terms if not _NAMED_DOCUMENT.search(t)]
    weights = term_weights(kb, terms)
    best = max(
        candidates, key=lambda s: (coverage(terms, weights, _document_text(kb.documents[s])), -candidates.index(s))
    )
    return kb.documents[best], None


def _named_section(document: Document, query: Query) -> tuple[int, int] | None:
    """The section whose heading holds a phrase the question quotes: (heading start, section end)."""
    quoted = [compact(q) for q in query.quoted if len(q) >= 4]
    if not quoted:
        return None
    text = document.text
    lines = _lines(text, 0, len(text))
    for i, line in enumerate(lines):
        if heading_level(text[line.start : line.end]) != 1:
            continue
        heading = compact(text[line.start : line.end])
        if any(q in heading or _similar(q, heading) for q in quoted):
            end = next((s.start for s in lines[i + 1 :] if heading_level(text[s.start : s.end]) == 1), len(text))
            return line.start, end
    return None


def _similar(quoted: str, heading: str) -> bool:
    """A quoted phrase naming a heading with its inner quotation marks changed (‘…’ for “…”)."""
    strip = re.compile(r"[“”‘’\"'「」『』]")
    return strip.sub("", quoted) in strip.sub("", heading)


# --- metadata --------------------------------------------------------------------------------------


def metadata(reading: Reading, hits: list[Hit]) -> list[Block] | None:
    """Author, unit, date, publisher…: the quotable metadata values of the document the question
    names or one of the top `Settings.evidence_passages` has, one labelled line each."""
    kb, query = reading.kb, reading.query
    keys = wanted_keys(query.normalized)
    if not keys:
        return None
    documents = [d for d in kb.documents.values() if any(compact(t) in compact(d.title) for t in query.titles)]
    documents += [
        kb.documents[s] for s in dict.fromkeys(h.chunk.source for h in hits[: reading.settings.evidence_passages])
    ]
    signed = _signed(kb, query)
    for document in signed or {d.source: d for d in documents}.values():
        spans = meta_spans(document)
        found = [(key, spans[key]) for key in keys if key in spans]
        if not found:
            continue
        rank = next((h.rank for h in hits if h.chunk.source == document.source), 1)
        chunk_of = _chunk_finder(kb, document.source)
        return [
            Block([Sentence(document.source, start, end, rank, chunk_of(start))], label="、".join(labels))
            for labels, (start, end) in _merged(found)
        ]
    return None


def _signed(kb: KnowledgeBase, query: Query) -> list[Document]:
    """The documents whose metadata names a person or a publication the question names (`李金英那篇
    文章…`: the article her byline signs; `人民日报那篇…`): the question names its article by them,
    and another article's date is no answer."""
    asked = compact(query.normalized)
    signed = []
    for document in kb.documents.values():
        spans = meta_spans(document)
        values = [document.text[s:e] for key, (s, e) in spans.items() if key in _NAMES_IN_META]
        values += _PUBLICATION.findall(" ".join(document.text[s:e] for s, e in spans.values()))
        if any(len(v) >= 2 and compact(v) in asked for v in values):
            signed.append(document)
    return signed


def _merged(found: list[tuple[str, tuple[int, int]]]) -> list[tuple[list[str], tuple[int, int]]]:
    """Wanted metadata values, overlapping ones quoted once as their union with every label they
    answer: the author inside its byline gives the byline (`宁都县委常委、县纪委* 钟恢生`: the post
    the article gives with the name), a date inside a newspaper line gives the line (its paper and
    page)."""
    groups: list[tuple[list[str], tuple[int, int]]] = []
    for key, (start, end) in found:
        label = LABELS.get(key, key)
        for i, (labels, (s, e)) in enumerate(groups):
            if start < e and s < end:
                groups[i] = ([*labels, label] if label not in labels else labels, (min(s, start), max(e, end)))
                break
        else:
            groups.append(([label], (start, end)))
    return groups


# --- a list item, for 第N点… follow-ups -------------------------------------------------------------


def item(reading: Reading, enumerations: Enumerations, source: str, start: int) -> list[Sentence]:
    """An item of an earlier answer with what follows it: up to the next item of its list, or the
    end of its paragraph (at most `Settings.answer_max_chars`)."""
    kb, budget = reading.kb, reading.settings.answer_max_chars
    document = kb.documents.get(source)
    if document is None:
        return []
    text = document.text
    line_end = text.find("\n", start)
    end = len(text) if line_end < 0 else line_end
    group = enumerations.group_at(document, start)
    if group is not None:
        later = [s.start for s in group if s.start > start]
        if later:
            end = min(end, later[0])
    chunk_of = _chunk_finder(kb, source)
    out: list[Sentence] = []
    used = 0
    for span in reading.sentences(document, start, end):
        if out and used + span.end - span.start > budget:
            break
        used += span.end - span.start
        out.append(Sentence(source, span.start, span.end, 1, chunk_of(span.start)))
    return out


# --- helpers ---------------------------------------------------------------------------------------


def _lines(text: str, start: int, end: int) -> list[Span]:
    """Non-empty lines of `text[start:end]` as spans (stripped)."""
    spans = []
    position = start
    for line in text[start:end].split("\n"):
        s = position + len(line) - len(line.lstrip())
        e = position + len(line.rstrip())
        if e > s:
            spans.append(Span(s, e))
        position += len(line) + 1
    return spans


def _first_sentence(reading: Reading, document: Document, line: Span) -> Span:
    first = reading.sentences(document, line.start, line.end)
    return first[0] if first else line


def _document_text(document: Document) -> str:
    return "\n".join([document.title, *map(str, document.meta.values()), document.text])


def _chunk_finder(kb: KnowledgeBase, source: str) -> Callable[[int], str]:
    chunks = kb.chunks_of(source)

    def chunk_of(position: int) -> str:
        return next((c.id for c in chunks if c.start <= position < c.end), chunks[0].id if chunks else "")

    return chunk_of
