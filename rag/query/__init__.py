"""Stage 4, query: what a question asks (kind, names, years, sides), follow-ups completed from the
previous turn, and definitions. Imports `rag.index` and below."""
