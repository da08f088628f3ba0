"""Stage 6, answer: the answer types, evidence and sentence scoring, answer shapes, abstention, the
extractive composer, and written answers (model client, writer, verification). Imports `rag.retrieval`
and below, never the index build."""
