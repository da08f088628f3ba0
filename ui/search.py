"""The 检索 tab's handler: the passages most relevant to a question, by rank, without an answer."""

from __future__ import annotations

from ui.page import STARTING, STARTUP_WAIT, Page, friendly, gr_escape
from ui.render import clean_text, search_html


class Search(Page):
    """Passage look-up."""

    def on_search(self, question: str, k: float) -> str:
        """The top passages for a question, by rank."""
        question = clean_text(question).strip()
        engine = self.loader.wait(STARTUP_WAIT) if question else self.loader.engine
        waiting = self.not_ready_text(engine)
        if engine is None or waiting:
            return f'<div class="src-note">{gr_escape(waiting or STARTING)}</div>'
        try:
            return search_html(self.lookup(engine), question, engine.search(question, k=int(k)))
        except Exception as exc:
            return f'<div class="src-note">{gr_escape(friendly(exc))}</div>'
