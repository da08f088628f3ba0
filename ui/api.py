"""The page's HTTP API (gradio_client: `/ask`, `/search`, `/documents`): plain values in, JSON out."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import gradio as gr

from ui.page import STARTING, STARTUP_WAIT, Page, friendly
from ui.render import clean_text, export_markdown

if TYPE_CHECKING:
    from rag import Engine


class Api(Page):
    """Answers, passages and the document list for programs; errors are `gr.Error`s in Chinese."""

    def _api_engine(self) -> Engine:
        engine = self.loader.wait(STARTUP_WAIT)
        waiting = self.not_ready_text(engine)
        if engine is None or waiting:
            raise gr.Error(waiting or STARTING, print_exception=False, title="请稍候")
        return engine

    def api_ask(self, question: str, history: list[str] | None = None, k: int = 5) -> dict[str, Any]:
        """A cited answer as JSON (`Answer.to_dict()` plus `markdown`); `history` = earlier questions."""
        engine = self._api_engine()
        try:
            answer = engine.ask(clean_text(question), history=[clean_text(q) for q in history or []], k=int(k))
        except Exception as exc:
            raise gr.Error(friendly(exc), print_exception=False, title="出错了") from None
        return {**answer.to_dict(), "markdown": export_markdown(answer, self.lookup(engine))}

    def api_search(self, question: str, k: int = 5) -> list[dict[str, Any]]:
        """The top `k` passages as JSON."""
        engine = self._api_engine()
        try:
            passages = engine.search(clean_text(question), k=int(k))
        except Exception as exc:
            raise gr.Error(friendly(exc), print_exception=False, title="出错了") from None
        return [
            {
                "rank": p.rank,
                "source": p.source,
                "chunk_id": p.chunk_id,
                "title": p.title,
                "heading": p.heading,
                "score": round(p.score, 6),
                "text": p.text,
            }
            for p in passages
        ]

    def api_documents(self) -> list[dict[str, Any]]:
        """The indexed documents as JSON."""
        return [dataclasses.asdict(d) for d in self._api_engine().documents()]
