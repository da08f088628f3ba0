"""Tokenizers (`rag.text.tokenize`): jieba words and character bigrams of normalized text, question words."""

from __future__ import annotations

from rag.text.normalize import normalize
from rag.text.tokenize import TOKENIZERS, bigrams, strip_question_words, words


def test_words_are_jieba_search_words_without_stop_words_and_punctuation():
    result = words(normalize("党委要担负起全面从严治党主体责任，书记是第一责任人。"))
    assert {"党委", "从严治党", "主体", "责任", "责任人", "书记"} <= set(result)
    assert not {"是", "，", "。"} & set(result)


def test_bigrams_of_chinese_runs_and_whole_latin_words():
    assert bigrams("党委主体责任") == ["党委", "委主", "主体", "体责", "责任"]
    assert bigrams("covid-19 和 3.5% 党") == ["covid-19", "和", "3.5", "党"]
    assert bigrams("，。!") == []


def test_traditional_and_simplified_give_the_same_tokens():
    for tokenize in TOKENIZERS.values():
        assert tokenize(normalize("黨委主體責任")) == tokenize(normalize("党委主体责任"))


def test_question_words_are_stripped_but_never_everything():
    assert strip_question_words("请问纪委的监督责任是什么？").split() == ["纪委的监督责任是"]
    assert strip_question_words("什么") == "什么"
