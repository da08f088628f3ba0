"""Stage 7, service: the corpus folder's operations (uploads, removals, kept versions), the background
worker and its change log, and evaluation over question sets. Imports `rag.answer` and below; sees the
engine only through the worker's `Indexer` protocol."""
