"""Stage 1, ingest: reading files (loaders), cleaning them into documents (clean, fields) and cutting
them into chunks with the text each is embedded as (chunk). Imports `rag.text` and below."""
