"""Latency of `search` and `ask` on an open engine: one question at a time, with concurrent clients,
and the median of each stage of `ask`."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from measuring import percentile, rounded, summary_ms, timed

STAGES = ("embed_query", "dense", "bm25_words", "bm25_bigrams", "retrieve_total", "compose")
"""The stages of `ask` timed separately (`stage_breakdown`)."""


def latency_figures(engine: Any, questions: Sequence[str], concurrency: int | list[int]) -> dict[str, Any]:
    """`search` and `ask` one at a time, the share that abstained, `ask`'s stages, and both with concurrent clients."""
    result: dict[str, Any] = {}
    result["search"] = summary_ms(timed(lambda q: engine.search(q, k=5), questions))
    asked: list[Any] = []
    result["ask"] = summary_ms(timed(lambda q: asked.append(engine.ask(q, k=5)), questions))
    result["abstained"] = round(sum(a.abstained for a in asked) / max(1, len(asked)), 3)
    result["stages"] = stage_breakdown(engine, questions)
    clients = concurrency if isinstance(concurrency, list) else [concurrency]
    result["search_concurrent"] = concurrent(lambda q: engine.search(q, k=5), questions, clients[0])
    for n in clients:
        result[f"ask_concurrent_{n}"] = concurrent(lambda q: engine.ask(q, k=5), questions, n)
    result["ask_concurrent"] = result[f"ask_concurrent_{clients[0]}"]
    return result


def concurrent(call: Callable[[str], Any], questions: Sequence[str], workers: int) -> dict[str, Any]:
    """`workers` clients asking at once: latency of each request, and requests per second overall."""

    def one(question: str) -> float:
        start = time.perf_counter()
        call(question)
        return time.perf_counter() - start

    start = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        seconds = list(pool.map(one, questions))
    wall = time.perf_counter() - start
    return {**summary_ms(seconds), "workers": workers, "qps": round(len(questions) / wall, 1)}


def stage_breakdown(engine: Any, questions: Sequence[str]) -> dict[str, Any]:
    """Median milliseconds of each stage of `ask`, timed one question at a time."""
    from rag.retrieval.retriever import Retriever
    from rag.text.tokenize import bigrams, words

    state = engine._state()
    retriever: Retriever = state.retriever
    kb, s = state.kb, engine.settings
    stages: dict[str, list[float]] = {k: [] for k in STAGES}
    for question in questions:
        start = time.perf_counter()
        query = retriever.query(question)
        stages["embed_query"].append(time.perf_counter() - start)
        start = time.perf_counter()
        kb.dense.search(query.vector, s.candidates)
        stages["dense"].append(time.perf_counter() - start)
        start = time.perf_counter()
        kb.lexical["words"].search(words(query.lexical), s.candidates)
        stages["bm25_words"].append(time.perf_counter() - start)
        start = time.perf_counter()
        kb.lexical["bigrams"].search(bigrams(query.lexical), s.candidates)
        stages["bm25_bigrams"].append(time.perf_counter() - start)
        start = time.perf_counter()
        hits = retriever.search(query, max(s.top_k, s.answer_passages))
        stages["retrieve_total"].append(time.perf_counter() - start)
        start = time.perf_counter()
        state.composer.compose(question, query, hits)
        stages["compose"].append(time.perf_counter() - start)
    return {name: rounded(percentile([x * 1000 for x in values], 50), 2) for name, values in stages.items()}
