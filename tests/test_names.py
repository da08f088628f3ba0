"""Names a question asks about, and where a document carries them."""

from rag.config import Settings
from rag.model import Document
from rag.query.names import DocumentNames, question_names
from rag.text.normalize import normalize

SETTINGS = Settings()


def _names(question: str) -> dict[str, tuple[str, tuple[str, ...]]]:
    return {n.text: (n.kind, n.forms) for n in question_names(normalize(question))}


def test_places_by_their_division_even_when_jieba_does_not_tag_them():
    names = _names("铁岭市对于运输防控重点物资的收入给予什么政策？")
    assert names == {"铁岭市": ("place", ("铁岭市", "铁岭"))}
    assert set(_names("黔东南州和海淀区的企业怎么办")) == {"黔东南州", "海淀区"}


def test_years_titles_and_organisations_are_names_too():
    names = _names("《中华人民共和国民法典》2020年起施行后，中华全国总工会如何落实")
    assert names["中华人民共和国民法典"][0] == "title"
    assert names["2020"][0] == "year"
    assert "中华全国总工会" in names


def test_words_that_name_no_particular_place_are_not_names():
    assert _names("我市城市社区的市场监管怎么做？") == {}
    assert _names("纪委监督责任包括什么") == {}


def test_a_traditional_question_names_the_same_place():
    assert "杭州市" in _names("杭州市對在孵企業減免租金有什麼補助？")


def test_a_name_in_the_header_counts_fully_and_in_the_text_half():
    documents = {
        "a": Document("a", "铁岭市人民政府办公室关于减免房租的通知", "一、减免对象。中小微企业。"),
        "b": Document(
            "b", "辽宁省关于减免房租的通知", "各市参照执行。\n" + "正文。" * 100 + "铁岭、鞍山两市先行试点。"
        ),
        "c": Document("c", "关于减免房租的通知", "文号：深府办〔2020〕3号"),
        "d": Document("d", "关于减免房租的通知", "正文", {"issuer": "铁岭市人民政府"}),
    }
    names = question_names(normalize("铁岭市减免几个月房租？"))
    found = DocumentNames(documents, SETTINGS.name_header_chars, SETTINGS.name_in_text)
    assert found.match("a", names) == (1.0, ("铁岭市",))
    assert found.match("b", names) == (0.5, ("铁岭市",))
    assert found.match("c", names) == (0.0, ())
    assert found.match("d", names) == (1.0, ("铁岭市",)), "metadata is part of the header"
    assert found.match("a", ()) == (0.0, ())


def test_a_simplified_name_is_found_in_a_traditional_text():
    documents = {"t": Document("t", "通知", "各縣市：\n" + "正文。" * 100 + "鐵嶺市先行試點。")}
    assert DocumentNames(documents, SETTINGS.name_header_chars, SETTINGS.name_in_text).match("t", question_names(normalize("铁岭市怎么做"))) == (0.5, ("铁岭市",))


def test_an_answer_quotes_only_documents_with_every_asked_name_when_there_are_some():
    from rag.model import Chunk, Hit
    from rag.query.names import quotable

    def hit(rank: int, found: tuple[str, ...]) -> Hit:
        chunk = Chunk(f"d{rank}#0", f"d{rank}", "", "", 0, 1, "x")
        return Hit(rank, chunk, 1.0 / rank, 0.9, {}, ("铁岭市", "2020"), found)

    hits = [hit(1, ("2020",)), hit(2, ("铁岭市", "2020")), hit(3, ())]
    assert [h.rank for h in quotable(hits)] == [2]
    assert quotable(hits[:1]) == hits[:1], "nothing carries every name: all may be quoted"
    assert quotable([]) == []
