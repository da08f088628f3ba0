"""The REST API's requests, responses and errors (`/api/v1/`, `ui.rest`) as pydantic models: they are
its OpenAPI schema (`/api/v1/openapi.json`).

Every error is `{"error": {"code": "<stable code>", "message": "中文说明 (English)"}}` (`ApiError`,
`error_body`); the codes are the keys of `CODES` and never change meaning.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

CODES = {
    "unauthorized": (401, "需要登录：请用 HTTP Basic 或 Bearer 令牌提供用户名和密码 (authentication required)"),
    "forbidden": (
        403,
        "只读模式：你没有添加或删除文档、管理知识库的权限 (read-only: this user may not change anything)",
    ),
    "too_many_attempts": (429, "登录尝试过多，请稍后再试 (too many failed logins; retry later)"),
    "loading": (503, "正在加载：模型和知识库加载中，请稍后再试 (the engine is loading; retry shortly)"),
    "indexing": (503, "正在建立索引，完成后即可提问 (the first index is being built; retry later)"),
    "unavailable": (503, "知识库索引暂时不可用，请联系管理员 (the index is unavailable)"),
    "invalid_request": (422, "请求的格式不对 (the request does not match the schema)"),
    "invalid_question": (400, "问题或筛选条件不可用 (empty question or invalid filter)"),
    "invalid_document": (400, "这个文件不能添加 (the upload was refused)"),
    "document_exists": (409, "知识库中已有同名文档；要替换请加 replace=true (a document of that name exists)"),
    "document_not_found": (404, "知识库中没有这个文档 (no such document)"),
    "kb_not_found": (404, "没有这个知识库 (no such knowledge base)"),
    "kb_exists": (409, "已有同名的知识库 (a knowledge base of that name exists)"),
    "invalid_kb": (400, "知识库的名称或操作不可用 (invalid knowledge-base name or action)"),
    "model_not_found": (404, "没有这个模型 (the model does not exist)"),
    "job_not_found": (404, "没有这个任务（或已被遗忘） (no such job, or forgotten)"),
    "too_large": (413, "文件过大 (the upload is too large)"),
    "length_required": (411, "上传请求须注明长度（Content-Length） (Content-Length required)"),
    "not_found": (404, "没有这个地址 (no such route)"),
    "method_not_allowed": (405, "这个地址不支持这种请求方法 (method not allowed)"),
    "internal_error": (500, "出错了：处理这个请求时遇到问题，详情已记入服务器日志 (internal error)"),
}
"""Every error code: its HTTP status and default message (Chinese first, English in brackets)."""


class ApiError(Exception):
    """An error answered as `{"error": {"code", "message"}}` with the code's status."""

    def __init__(self, code: str, message: str = "", headers: dict[str, str] | None = None) -> None:
        self.code, self.status = code, CODES[code][0]
        self.message = message or CODES[code][1]
        self.headers = headers or {}
        super().__init__(self.message)


def error_body(code: str, message: str = "") -> dict[str, Any]:
    """The JSON of an error (`message` defaults to the code's own)."""
    return {"error": {"code": code, "message": message or CODES[code][1]}}


class ErrorDetail(BaseModel):
    code: str = Field(description="stable error code: " + ", ".join(CODES))
    message: str = Field(description="中文说明 (English)")


class ErrorResponse(BaseModel):
    error: ErrorDetail


class Filters(BaseModel):
    """Where to look: knowledge bases, documents, dates (all optional)."""

    model_config = ConfigDict(extra="forbid")

    kbs: list[str] | None = Field(
        None, description="knowledge bases to ask (default: `default`)", examples=[["default"]]
    )
    source: list[str] | str | None = Field(
        None, description="document ids (file names) or title words; only the documents matching one are used"
    )
    date_from: str | None = Field(None, description="documents dated on or after (YYYY-MM-DD)", examples=["2018-01-01"])
    date_to: str | None = Field(None, description="documents dated on or before (YYYY-MM-DD)")
    k: int = Field(5, ge=1, le=50, description="passages returned (answers quote from more)")


class AskRequest(Filters):
    question: str = Field(description="the question", examples=["纪委监督责任包括什么"])
    history: list[str | dict[str, Any]] = Field(
        default_factory=list,
        description="earlier turns, oldest first: questions, or answers as this API returned them (follow-ups)",
    )
    stream: bool = Field(
        False,
        description="answer as server-sent events (`Accept: application/x-ndjson` for NDJSON): `delta` events "
        "with each sentence, then one `final` event with the whole answer (which replaces the deltas)",
    )


class SearchRequest(Filters):
    question: str = Field(description="the text to look up", examples=["纪委监督责任包括什么"])


class CitationOut(BaseModel):
    id: int = Field(description="the `[n]` in the answer")
    source: str = Field(description="document id (file name in the corpus folder)")
    title: str
    quote: str = Field(description="verbatim from the document: text[start:end] == quote")
    start: int
    end: int
    kb: str = Field("default", description="the knowledge base the document is in")


class PassageOut(BaseModel):
    rank: int
    source: str
    chunk_id: str
    title: str
    heading: str
    score: float = Field(description="fused score; only its order means something")
    text: str
    kb: str = "default"


class AnswerOut(BaseModel):
    """An answer: `answer` holds `[n]` markers, `citations[n-1].id == n` (README, “JSON output”)."""

    model_config = ConfigDict(extra="allow")

    question: str
    standalone_question: str
    answer: str
    abstained: bool
    kind: str
    citations: list[CitationOut]
    passages: list[PassageOut]
    mode: Literal["extractive", "generated"]
    generation: dict[str, Any] | None
    markdown: str = Field(description="the answer and its sources as a Markdown document")


class StreamEvent(BaseModel):
    """One event of a streamed answer (`stream: true`)."""

    type: Literal["delta", "final", "error"]
    text: str | None = Field(None, description="delta: the next verified sentence(s) of the answer")
    citations: list[CitationOut] | None = Field(None, description="delta: the citations it introduces")
    answer: AnswerOut | None = Field(None, description="final: the whole answer")
    error: ErrorDetail | None = None


class SearchOut(BaseModel):
    query: str
    passages: list[PassageOut]


class DocumentOut(BaseModel):
    source: str
    title: str
    date: str
    chunks: int
    characters: int
    kb: str = "default"


class DocumentsOut(BaseModel):
    documents: list[DocumentOut]


class JobOut(BaseModel):
    """A queued change of a knowledge base (upload, removal) and how far it got."""

    id: int
    action: Literal["add", "replace", "remove", "build", "rebuild"]
    name: str
    state: Literal["queued", "running", "done", "failed"]
    error: str = Field("", description="why it failed (Chinese)")
    source: str = Field("", description="the document id it got (add/replace) or had (remove)")
    kb: str = "default"


class KbOut(BaseModel):
    name: str
    documents: int = Field(description="document files in its corpus folder")
    store: str = Field("local", description="`local`, or the Milvus store it uses")
    created: str = Field("", description="when it was created (ISO time; empty for `default`)")


class KbDeleted(BaseModel):
    name: str
    archived: bool = Field(description="its documents were kept in a dated archive folder on the server")


class KbsOut(BaseModel):
    kbs: list[KbOut]


class KbCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=100, examples=["疫情政策"])


class KbRename(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=100, description="the new name")


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse, "description": description}
    for status, description in [
        (401, "no or wrong credentials (with login configured)"),
        (403, "read-only user"),
        (422, "invalid request"),
        (429, "too many failed logins"),
        (503, "the engine is loading or indexing"),
    ]
}
"""The error responses every route documents."""
