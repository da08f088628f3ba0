from rag.text.normalize import compact, normalize, to_simplified


def test_traditional_becomes_simplified():
    assert to_simplified("縣級監委向鄉鎮派出了什麼機構") == "县级监委向乡镇派出了什么机构"


def test_full_width_becomes_half_width_and_lower_case():
    assert normalize("ＡＢＣ１２３，Ｐｙｔｈｏｎ") == "abc123,python"


def test_simplified_and_traditional_meet_in_one_form():
    assert normalize("黨委主體責任") == normalize("党委主体责任")


def test_compact_drops_whitespace():
    assert compact("紀委 監督\n責任") == "纪委监督责任"
