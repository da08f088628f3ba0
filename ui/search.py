"""The 检索 tab's handler: the passages most relevant to a question, by rank, without an answer, in the
knowledge bases chosen at the top of the page, from the documents the tab's filters allow."""

from __future__ import annotations

import re

from ui.page import STARTING, STARTUP_WAIT, Page, friendly, gr_escape
from ui.render import clean_text, search_html


def entries(text: str | None) -> list[str]:
    """The documents a filter box names: ids or title words, separated by commas (or 、，；)."""
    return [part.strip() for part in re.split(r"[,，、;；\n]", clean_text(text or "")) if part.strip()]


class Search(Page):
    """Passage look-up."""

    def on_search(
        self,
        question: str,
        k: float,
        kbs: list[str] | None = None,
        source: str = "",
        date_from: str = "",
        date_to: str = "",
    ) -> str:
        """The top passages for a question, by rank, in the chosen knowledge bases and filtered documents."""
        question = clean_text(question).strip()
        engine = self.loader.wait(STARTUP_WAIT) if question else self.loader.engine
        waiting = self.not_ready_text(engine)
        if engine is None or waiting:
            return f'<div class="src-note">{gr_escape(waiting or STARTING)}</div>'
        try:
            passages = engine.search(
                question,
                k=int(k),
                kbs=list(kbs or []) or None,
                source=entries(source) or None,
                date_from=clean_text(date_from or "").strip() or None,
                date_to=clean_text(date_to or "").strip() or None,
            )
            return search_html(self.lookup(engine, [p.kb for p in passages]), question, passages)
        except Exception as exc:
            return f'<div class="src-note">{gr_escape(friendly(exc))}</div>'
