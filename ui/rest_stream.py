"""Answers sentence by sentence for the APIs (`ui.rest` and `ui.openai_compat`), from `Engine.ask_stream`.

With a language model, the sentences are the model's, each once it passed its checks (`Delta`s), and
then the final answer (which replaces them: it is the extractive one when the written one fell back).
Without one, the final extractive answer is sent as its sentences, each with the citations it
introduces, and then as a whole. Framing: server-sent events (`data: <json>`) or NDJSON.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rag import Citation, Event

_SENTENCE = re.compile(r".*?(?:[。！？!?；;]+[”’」』）)]*(?:\[\d+\])*\n*|\n+|$)", re.S)
_MARKER = re.compile(r"\[(\d+)\]")
SSE = "text/event-stream"
NDJSON = "application/x-ndjson"


def sentences(text: str) -> list[str]:
    """`text` cut after each sentence (its end punctuation and `[n]` markers) and each line break;
    the pieces joined give `text` back."""
    return [piece for piece in _SENTENCE.findall(text) if piece]


def pieces(events: Iterable[Event]) -> Iterator[tuple[str, list[Citation]] | Any]:
    """`(text, new citations)` for each verified sentence, then the final `Answer` (the last item)."""
    from rag import Delta

    streamed = False
    for event in events:
        if isinstance(event, Delta):
            streamed = True
            yield event.text, list(event.citations)
            continue
        answer = event.answer
        if not streamed:
            seen: set[int] = set()
            for sentence in sentences(answer.answer):
                ids = [int(n) for n in _MARKER.findall(sentence)]
                yield sentence, [c for c in answer.citations if c.id in ids and c.id not in seen]
                seen.update(ids)
        yield answer
        return


def frame(record: dict[str, Any], media: str) -> bytes:
    """One event: `data: <json>` and a blank line (SSE), or one JSON line (NDJSON)."""
    line = json.dumps(record, ensure_ascii=False)
    return (f"data: {line}\n\n" if media == SSE else f"{line}\n").encode()


def media_type(accept: str) -> str:
    """NDJSON when the client asks for it (`Accept: application/x-ndjson`), else server-sent events."""
    return NDJSON if NDJSON in accept.lower() else SSE
