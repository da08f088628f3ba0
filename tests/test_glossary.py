"""The English → Chinese glossary of English questions (`rag/text/glossary.py`)."""

from rag.text.glossary import chinese_terms


def test_places_and_terms_are_found_longest_first_in_order():
    terms = chinese_terms("What did the Central Commission for Discipline Inspection ask of Shaanxi and Shanxi?")
    assert terms == ["中央纪委", "陕西", "山西"]
    assert chinese_terms("the commission for discipline inspection") == ["纪委"]
    assert chinese_terms("People’s Congress of INNER MONGOLIA") == ["人大", "内蒙古"]


def test_words_match_whole_words_only():
    assert chinese_terms("steam teams officialdom") == []
    assert chinese_terms("team, officials; cadres.") == ["组", "干部"]


def test_each_term_once():
    assert chinese_terms("cadre cadres official") == ["干部"]
