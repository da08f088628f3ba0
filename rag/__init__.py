"""政策问答: cited answers from a corpus of Chinese policy documents.

The public API is `Engine` (index, search, ask) with `Settings` for configuration:

    from rag import Engine
    engine = Engine.open()            # builds the index when it is missing
    answer = engine.ask("纪委监督责任包括什么")
"""

from rag.config import Settings

__all__ = ["Answer", "Citation", "Engine", "Passage", "Settings"]
__version__ = "0.1.0"


def __getattr__(name: str):  # heavy imports (torch, faiss) only when the engine is used
    if name in {"Engine", "Answer", "Citation", "Passage"}:
        from rag import engine

        return getattr(engine, name)
    raise AttributeError(name)
