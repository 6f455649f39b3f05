"""LangChain integration for tidb-jina (TiDB vector store, Jina / Hugging Face embeddings)."""
