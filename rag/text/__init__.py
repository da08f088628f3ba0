"""Stage 0, text: the matching form (normalize), the glossary, tokenizers (jieba words, bigrams) and the shared
patterns. Imports nothing of `rag` but `rag.model` and `rag.config`."""
