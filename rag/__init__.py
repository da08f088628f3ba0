"""政策问答: cited answers from a corpus of Chinese policy documents.

The public API is `Engine` (index, search, ask) with `Settings` for configuration:

    from rag import Engine
    engine = Engine.open()            # builds the index when it is missing
    answer = engine.ask("纪委监督责任包括什么")

The page (`ui/`) and the command line use only the names below; the stages behind them are laid out
in docs/architecture.md.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from rag.config import Settings

_LAZY = {  # heavy imports (torch, faiss) only when the engine is used
    "Engine": "rag.engine",
    "Health": "rag.engine",
    "DocumentInfo": "rag.engine",
    "KnowledgeBaseInfo": "rag.service.kbs",
    "KnowledgeBases": "rag.service.kbs",
    "KnowledgeBaseError": "rag.service.kbs",
    "KnowledgeBaseExists": "rag.service.kbs",
    "UnknownKnowledgeBase": "rag.service.kbs",
    "DEFAULT_KB": "rag.service.kbs",
    "QuestionError": "rag.engine",
    "Answer": "rag.answer.types",
    "Citation": "rag.answer.types",
    "Generation": "rag.answer.types",
    "Delta": "rag.answer.writer",
    "Final": "rag.answer.writer",
    "Event": "rag.answer.writer",
    "Document": "rag.model",
    "Passage": "rag.model",
    "DocumentError": "rag.service.corpus",
    "DocumentExists": "rag.service.corpus",
    "Job": "rag.service.worker",
    "WorkerStatus": "rag.service.worker",
    "IndexUnavailable": "rag.index.layout",
    "ModelError": "rag.embedding.embedder",
    "log_audit": "rag.service.audit",
    "check_index": "rag.index.knowledge_base:check",
    "evaluate": "rag.service.evaluate",
    "load_questions": "rag.service.evaluate",
    "generation_metrics": "rag.answer.writer",
}

__all__ = ["Settings", *_LAZY]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module, _, attribute = _LAZY[name].partition(":")
        return getattr(import_module(module), attribute or name)
    raise AttributeError(f"module 'rag' has no attribute {name!r}")
