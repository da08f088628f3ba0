"""Where a build's search structures live: `base` (the contract), `local` (FAISS + bm25s files),
`milvus` (a Milvus collection); `factory` alone knows every backend."""
