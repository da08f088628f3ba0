"""Stage 3, index: the build (write side: reuse, gather, commit), the knowledge base (read side), its
layout and integrity on disk, dense and BM25 search, and the store backends. Imports `rag.embedding` and below."""
