"""The chat page's pure parts (`ui.render`, `ui.access`): what it shows, and who may use it.

The handlers over the real engine are tested in test_page.py; the real page in Chromium in test_app*.py.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # ui/ sits at the top of the project, outside the installed package
    sys.path.insert(0, str(ROOT))

from ui.access import Access, AccessError, Throttle, audit_event, parse_users  # noqa: E402
from ui.page import Page  # noqa: E402
from ui.render import (  # noqa: E402
    chat_text,
    chinese,
    clean_text,
    export_markdown,
    highlight,
    md_text,
    outcome_markdown,
    sources_html,
)

# --- rendering -------------------------------------------------------------------------------------


def test_highlight_marks_the_exact_span_and_escapes_html() -> None:
    text = "第一段。\n" + "字" * 300 + "<b>前文，引用的句子&符号。后文" + "字" * 300 + "\n末段"
    start = text.index("引用")
    end = text.index("。后文") + 1
    html = highlight(text, start, end)
    assert "<mark>引用的句子&amp;符号。</mark>" in html
    assert "&lt;b&gt;前文，" in html and "<b>" not in html
    assert html.count("…") == 2 and "第一段" not in html and "末段" not in html


def test_document_text_is_shown_as_text_in_chat_messages() -> None:
    """Markdown, HTML, math and bare links from a document are escaped, not rendered."""
    text = md_text(
        "公式$$x^2$$见 https://example.com 和 www.example.com，**加粗**，<script>x</script>，a_b_c\n- 列表\n# 标题"
    )
    assert "$$" not in text.replace("\\$", "") and "\\$\\$x^2\\$\\$" in text
    assert "https://" not in text and "www." not in text
    assert "**" not in text.replace("\\*", "") and "<script>" not in text
    assert "\n\\- 列表" in text and "\n\\# 标题" in text


def test_each_cited_sentence_is_its_own_paragraph_and_each_marker_a_link(engine) -> None:
    answer = engine.ask("纪委监督责任包括什么")
    assert len(answer.citations) >= 2
    text = chat_text(answer, turn=3)
    for citation in answer.citations:
        assert f"(#cite-3-{citation.id} " in text
    paragraphs = [p for p in text.split("\n\n") if p.strip()]
    assert len(paragraphs) >= len(answer.citations)
    assert all(re.search(r"\[\\\[\d+\\\]\]", p) for p in paragraphs)  # every paragraph ends in its citation


def test_a_marker_after_an_exclamation_mark_is_a_link_not_an_image() -> None:
    """`…下去![1]`: the `!` before a marker's link must not make it Markdown's image syntax, for any marker."""
    from markdown_it import MarkdownIt

    from rag import Answer, Citation

    quotes = ["一定要坚持不懈地抓下去!", "决不能半途而废！", "要久久为功!"]
    citations = [Citation(n, "a.txt", "通知", "", quote, 0, len(quote)) for n, quote in enumerate(quotes, 1)]
    answer = Answer("怎么办", "一定要坚持不懈地抓下去![1]决不能半途而废！[2]要久久为功!![3]", False, citations)
    html = MarkdownIt("commonmark").render(chat_text(answer, turn=0))
    assert "<img" not in html, html
    for n in (1, 2, 3):
        assert f'<a href="#cite-0-{n}"' in html, html
    assert "抓下去!" in html and "久久为功!!" in html  # the exclamation marks are still shown
    exported = MarkdownIt("commonmark").render(export_markdown(answer))
    assert "<img" not in exported and "抓下去!" in exported, exported


def test_sources_are_grouped_by_document_with_titles_quotes_and_no_scores(engine) -> None:
    answer = engine.ask("纪委监督责任包括什么")
    html = sources_html(Page.lookup(engine), answer, turn=0)
    documents = {c.source for c in answer.citations}
    assert html.count('class="doc"') == len(documents)
    for c in answer.citations:
        assert f'id="cite-0-{c.id}"' in html
        assert c.quote.replace("“", "&ldquo;")[:10] in html or c.quote[:10] in html
        assert c.title in html
    for source in documents:
        assert source not in html  # titles, not file names
    assert not re.search(r"0\.\d{3}", html) and "相关度" not in html and "得分" not in html
    abstention = engine.ask("明天北京的天气怎么样?")
    assert abstention.abstained
    html = sources_html(Page.lookup(engine), abstention)
    assert "第 1 位" in html and not re.search(r"0\.\d{3}", html)


def test_page_messages_are_chinese_without_english_notes_or_paths() -> None:
    assert chinese("无法读取这个文件：不是可读的 Word (.docx) 文件 (not a readable .docx file): File is not a zip") == (
        "无法读取这个文件：不是可读的 Word 文件"
    )
    assert chinese("无法读取这个文件：文件是二进制数据 (binary data)") == "无法读取这个文件：文件是二进制数据"


def test_a_lone_surrogate_becomes_a_replacement_character() -> None:
    assert clean_text("纪委\ud800监督") == "纪委\ufffd监督"
    assert clean_text("😀") == "😀"


# --- access ---------------------------------------------------------------------------------------


def test_users_inline_and_from_a_file(tmp_path: Path) -> None:
    assert parse_users("张三:pw1,admin:p:w:admin") == {"张三": ("pw1", ""), "admin": ("p:w", "admin")}
    users = tmp_path / "users.txt"
    users.write_text("# 用户\n张三:pw1\n\nadmin:pw2:admin\n", encoding="utf-8")
    assert parse_users(f"@{users}") == parse_users(str(users)) == {"张三": ("pw1", ""), "admin": ("pw2", "admin")}
    with pytest.raises(AccessError):
        parse_users("nobody")
    with pytest.raises(AccessError):
        parse_users(f"@{tmp_path / 'missing.txt'}")


def test_login_throttle_backs_off_per_user_and_per_address_and_a_success_resets() -> None:
    """After `per_user` failures a user name waits 1, 2, 4… seconds (capped) before the next try; an address
    after `per_address`; refused tries are not checked; a success clears the user's count."""
    now = [1000.0]
    throttle = Throttle(per_user=3, per_address=5, first=1.0, longest=8.0, clock=lambda: now[0])
    for _ in range(2):
        assert throttle.begin("张三", "10.0.0.1") == 0
    assert throttle.begin("张三", "10.0.0.1") == 0  # the third try is checked; it fails: locked for 1 s
    assert throttle.begin("张三", "10.0.0.1") == 1.0
    assert throttle.begin("张三", "10.0.0.2") == 1.0  # the user name is locked from any address
    now[0] += 1.0
    assert throttle.begin("张三", "10.0.0.1") == 0  # the fourth fails: 2 s
    assert throttle.begin("张三", "10.0.0.1") == 2.0
    for expected in (4.0, 8.0, 8.0):  # doubling, capped
        now[0] += 60
        assert throttle.begin("张三", "10.0.0.3") == 0
        assert throttle.begin("张三", "10.0.0.3") == expected
    assert throttle.begin("李四", "10.0.0.4") == 0  # other users are not locked
    throttle.succeeded("李四", "10.0.0.4")
    now[0] += 60
    assert throttle.begin("张三", "10.0.0.1") == 0
    throttle.succeeded("张三", "10.0.0.1")  # the right password: counting starts again
    assert [throttle.begin("张三", "10.0.0.9") for _ in range(3)] == [0, 0, 0]
    assert throttle.begin("张三", "10.0.0.9") == 1.0

    spray = Throttle(per_user=3, per_address=5, first=1.0, longest=8.0, clock=lambda: now[0])
    assert [spray.begin(f"用户{n}", "10.9.9.9") for n in range(5)] == [0] * 5  # one try each, five names
    assert spray.begin("用户9", "10.9.9.9") == 1.0  # the address is locked, whatever the name
    assert spray.begin("用户9", "10.9.9.8") == 0
    now[0] += 7200  # failures an hour old are forgotten
    assert spray.begin("用户0", "10.9.9.9") == 0


def test_audit_lines_are_one_json_line_each(caplog: pytest.LogCaptureFixture) -> None:
    import json
    import logging

    with caplog.at_level(logging.INFO, logger="rag.audit"):
        audit_event("login", '张三\n{"user": "admin"}\u2028x', ok=False, address="10.0.0.1", reason="throttled")
    [record] = [r for r in caplog.records if r.name == "rag.audit"]
    line = record.getMessage()
    assert len(line.splitlines()) == 1 and "\u2028" not in line
    entry = json.loads(line)
    assert entry["user"] == '张三\n{"user": "admin"}\u2028x' and entry["event"] == "login"
    assert entry["ok"] is False and entry["address"] == "10.0.0.1" and entry["reason"] == "throttled"
    assert entry["time"]


def test_read_only_lets_only_administrators_edit() -> None:
    access = Access.from_spec("张三:pw1,admin:pw2:admin", read_only=True)
    assert access.check("张三", "pw1") and not access.check("张三", "pw2") and not access.check("王五", "pw1")
    assert access.can_edit("admin") and not access.can_edit("张三") and not access.can_edit(None)
    assert Access().can_edit(None) and not Access(read_only=True).can_edit(None)


def test_an_upload_result_says_what_cleaning_took_out_of_its_document():
    from rag import Job
    from rag.index.report import BuildReport

    report = BuildReport(
        notes=[
            "通报.txt：清理步骤“链接列表”删去了 25% 的文字（90 / 365 个字符） (cleaning step links removed 25% of the text)",
            "别的.txt：清理步骤“拼音注音”删去了 41% 的文字（41 / 100 个字符） (cleaning step pinyin removed 41% of the text)",
        ]
    )
    job = Job(1, "add", "通报.txt", "张三", state="done", report=report, source="通报.txt")
    text = outcome_markdown(job, "通报")
    assert "链接列表" in text and "25%" in text and "cleaning step" not in text
    assert "拼音注音" not in text  # another document's note
    assert "注意" not in outcome_markdown(Job(2, "add", "别的2.txt", "张三", state="done", report=report, source="别的2.txt"))
