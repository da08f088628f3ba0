"""The answer judge's network: the default model's encoder read as a cross-encoder.

The question and a candidate sentence (with its title, heading and the sentence before it) are read
together by the first `layers` transformer layers of multilingual-e5-small (the default model's exported
folder); a linear head on the first token gives the logit that the sentence answers the question. Only
the top `trained` layers and the head are trained (`training/train_judge.py`); they are what the
repository ships (`rag/answer/judge_files/`), the rest comes from the default model folder.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

WEIGHTS = "judge.safetensors"
CONFIG = "judge.json"


@dataclass(frozen=True)
class JudgeShape:
    """Which part of the default model the judge reads and how long its inputs are."""

    layers: int = 8
    """Transformer layers kept from the default model (of 12)."""
    trained: int = 3
    """The top layers that training changes (shipped with the head)."""
    max_length: int = 128
    """Tokens of one (question, candidate) pair; the candidate's context is cut first."""

    @classmethod
    def read(cls, folder: Path) -> JudgeShape:
        return cls(**json.loads((folder / CONFIG).read_text(encoding="utf-8"))["shape"])


def candidate_text(sentence: str, before: str = "", title: str = "") -> str:
    """What the judge reads of a candidate: the sentence first, then where it stands."""
    context = "：".join(part for part in (title.strip(), before.strip()) if part)
    return f"{sentence.strip()}｜{context}" if context else sentence.strip()


class CrossEncoder(nn.Module):
    """The first `shape.layers` layers of the default model and a one-logit head."""

    def __init__(self, base: Path, shape: JudgeShape) -> None:
        super().__init__()
        from transformers import AutoConfig, AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        self.shape = shape
        self.tokenizer = AutoTokenizer.from_pretrained(str(base))
        config = AutoConfig.from_pretrained(str(base))
        config.num_hidden_layers = shape.layers
        verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
        hf_logging.set_verbosity_error()  # the layers left out are reported as unused weights: expected
        hf_logging.disable_progress_bar()
        try:
            self.encoder = AutoModel.from_pretrained(str(base), config=config, add_pooling_layer=False)
        finally:
            hf_logging.set_verbosity(verbosity)
            if bars:
                hf_logging.enable_progress_bar()
        self.head = nn.Linear(self.encoder.config.hidden_size, 1)

    def trained_parameters(self) -> dict[str, nn.Parameter]:
        """The parameters training changes: the top `shape.trained` layers and the head."""
        first = self.shape.layers - self.shape.trained
        return {
            name: p
            for name, p in self.named_parameters()
            if name.startswith("head.")
            or any(name.startswith(f"encoder.encoder.layer.{i}.") for i in range(first, self.shape.layers))
        }

    def batch(
        self, questions: list[str], candidates: list[str], max_length: int | None = None
    ) -> dict[str, torch.Tensor]:
        """Token ids of (question, candidate) pairs, the candidate cut to fit `max_length` (default: the shape's)."""
        return self.tokenizer(
            questions,
            candidates,
            truncation="only_second",
            max_length=max_length or self.shape.max_length,
            padding=True,
            return_tensors="pt",
        )

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **_: Any) -> torch.Tensor:
        states = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return self.head(states[:, 0]).squeeze(-1)

    def save_trained(self, folder: Path, manifest: dict[str, Any]) -> None:
        """Write the trained parameters (float16) and the manifest with the shape."""
        from safetensors.torch import save_file

        folder.mkdir(parents=True, exist_ok=True)
        tensors = {name: p.detach().to(torch.float16).contiguous() for name, p in self.trained_parameters().items()}
        save_file(tensors, str(folder / WEIGHTS))
        record = {"shape": asdict(self.shape), **manifest}
        (folder / CONFIG).write_text(json.dumps(record, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, base: Path, folder: Path) -> CrossEncoder:
        """The judge: `base` (the default model folder) with the trained parameters of `folder`."""
        from safetensors.torch import load_file

        from rag.embedding.embedder import MODEL_LOADING

        with MODEL_LOADING:  # transformers' lazy imports are not safe from two threads at once
            model = cls(base, JudgeShape.read(folder))
        tensors = load_file(str(folder / WEIGHTS))
        missing = set(model.trained_parameters()) - set(tensors)
        if missing:
            raise ValueError(f"{folder / WEIGHTS} lacks {sorted(missing)[:3]}: re-run training/train_judge.py")
        model.load_state_dict({k: v.float() for k, v in tensors.items()}, strict=False)
        return model.eval()
