"""Long-term memory and RAG on PostgreSQL + pgvector: embeddings, store, ingestion, retrieval."""
