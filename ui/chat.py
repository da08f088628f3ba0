"""The 问答 tab's handlers: a question answered in the context of the session's earlier answers, the
answer streamed as it is written and verified, and its sources and export shown beside it.

`chat` holds the Chatbot's messages, `turns` each exchange's Answer (None after an error), `kbs` the knowledge
bases chosen at the top of the page (none: `default`); each citation says which one it is from.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import gradio as gr

from ui.page import STARTING, STARTUP_WAIT, Page, friendly
from ui.render import chat_text, clean_text, export_markdown, md_text, sources_html, streaming_text

if TYPE_CHECKING:
    from rag import Answer, Engine


def recent(turns: list[Any], keep: int) -> list[Answer]:
    """The last `keep` answers of a conversation (turns that failed are skipped)."""
    answers = [t for t in turns if t is not None]
    return answers[-keep:] if keep > 0 else []


class Chat(Page):
    """Asking, following up, showing an earlier answer's sources, and clearing the conversation."""

    def on_ask(
        self, question: str, chat: list[dict], turns: list[Any], kbs: list[str] | None = None
    ) -> Iterator[tuple[Any, ...]]:
        """Answer a question in the context of the session's earlier answers (a generator: it may first
        say that it waits for the engine, and a streamed answer can yield as it grows)."""
        question = clean_text(question).strip()
        if not question:
            gr.Warning("请输入一个问题。", title="提示")
            yield (gr.skip(),) * 6
            return
        chat, turns = [*(chat or []), {"role": "user", "content": md_text(question)}], list(turns or [])
        engine = self.loader.start().engine
        if engine is None and self.loader.loading:
            yield "", [*chat, {"role": "assistant", "content": STARTING}], turns, gr.skip(), gr.skip(), gr.skip()
            engine = self.loader.wait(STARTUP_WAIT)
        waiting = self.not_ready_text(engine)
        if engine is None or waiting:
            chat.append({"role": "assistant", "content": md_text(waiting or STARTING)})
            yield "", chat, [*turns, None], gr.skip(), gr.skip(), gr.skip()
            return
        turn = len(turns)
        try:
            history = recent(turns, engine.settings.followup_history)
            events = engine.ask_stream(question, history=history, kbs=list(kbs or []) or None)
            if getattr(engine, "llm", None) is not None:  # the model may take a while: say it is writing
                yield (
                    "",
                    [*chat, {"role": "assistant", "content": streaming_text("", [], turn)}],
                    turns,
                    *self.writing(),
                )
            answer = None
            for update in self.streamed(engine, question, events, turn, kbs):
                if isinstance(update, tuple):
                    message, sources = update
                    yield "", [*chat, {"role": "assistant", "content": message}], turns, sources, *self.writing()[1:]
                else:
                    answer = update
        except Exception as exc:
            chat.append({"role": "assistant", "content": f"**出错了**：{md_text(friendly(exc))}"})
            yield "", chat, [*turns, None], gr.skip(), gr.skip(), gr.skip()
            return
        assert answer is not None
        chat.append({"role": "assistant", "content": chat_text(answer, turn)})
        yield "", chat, [*turns, answer], *self.answer_panels(engine, answer, turn)

    def streamed(
        self, engine: Engine, question: str, events: Iterator[Any], turn: int, kbs: list[str] | None = None
    ) -> Iterator[Any]:
        """`engine.ask_stream`'s events as the page shows them: (message, sources panel) for the verified
        sentences so far, then the final `Answer` (which replaces them)."""
        from rag import Answer, Delta

        text, citations = "", []
        for event in events:
            if not isinstance(event, Delta):
                yield event.answer
                return
            text, citations = text + event.text, [*citations, *event.citations]
            partial = Answer(question, text.strip(), False, list(citations), standalone_question=question)
            yield streaming_text(text, citations, turn), sources_html(self.lookup(engine, kbs), partial, turn)

    @staticmethod
    def writing() -> tuple[Any, Any, Any]:
        """Sources panel, export and download while an answer is being written (its sources come with it)."""
        return gr.skip(), "", gr.Button(interactive=False)

    def on_example(
        self, chat: list[dict], turns: list[Any], evt: gr.SelectData, kbs: list[str] | None = None
    ) -> Iterator[tuple[Any, ...]]:
        """Ask an example question clicked in the empty chat."""
        value = evt.value if isinstance(evt.value, dict) else {"text": str(evt.value)}
        yield from self.on_ask(str(value.get("text", "")), chat, turns, kbs)

    def on_select(self, turns: list[Any], evt: gr.SelectData) -> tuple[Any, ...]:
        """Show the sources of an earlier answer when its message (or one of its `[n]` links) is clicked."""
        index = evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index
        turn = index // 2 if isinstance(index, int) else -1
        answer = turns[turn] if 0 <= turn < len(turns or []) else None
        engine = self.loader.engine
        if answer is None or engine is None:
            return (gr.skip(),) * 3
        return self.answer_panels(engine, answer, turn)

    def on_clear(self) -> tuple[Any, ...]:
        """Forget the conversation: messages, history, sources panel and export."""
        return "", [], [], sources_html(lambda source: None, None), "", gr.Button(interactive=False)

    def answer_panels(self, engine: Engine, answer: Answer, turn: int) -> tuple[str, str, Any]:
        """Sources panel, export Markdown and the download button for one answer."""
        lookup = self.lookup(engine, [*(c.kb for c in answer.citations), *(p.kb for p in answer.passages)])
        return sources_html(lookup, answer, turn), export_markdown(answer, lookup), gr.Button(interactive=True)
