"""Stage 5, retrieval: the rankings of one question fused into the best passages. Imports `rag.query` and below."""
