"""Test helpers for users and for this package: fake servers that need no network.

- ``FakeEmbeddingServer``: a real HTTP server on 127.0.0.1 that follows the Jina embeddings
  and rerank contracts, the Hugging Face router contract and the TEI contract, with fault
  injection (429 with/without Retry-After, 5xx, dropped connections, latency, a concurrency
  cap) and a per-request log.
- ``MySQLRecorder``: a stand-in TiDB at the PyMySQL connection level. ``VectorTable(
  recorder.url, engine_args=recorder.engine_args())`` runs the real TiDB code path; every
  statement is recorded (``RecordedStatement``) exactly as PyMySQL would send it, and
  ``reply`` / ``fail`` script answers and MySQL errors (e.g. a cluster without TiFlash).
- ``lexical_embedding`` / ``LexicalEmbedder``: deterministic hashed bag-of-words vectors and an
  offline ``EmbeddingProvider`` built on them (texts sharing words are near each other).
"""

from tidb_jina.testing._lexical import DEFAULT_LEXICAL_DIMENSION, LexicalEmbedder, lexical_embedding
from tidb_jina.testing._mysql_stub import MySQLRecorder, RecordedStatement
from tidb_jina.testing._server import FakeEmbeddingServer, RecordedRequest

__all__ = [
    "DEFAULT_LEXICAL_DIMENSION",
    "FakeEmbeddingServer",
    "LexicalEmbedder",
    "MySQLRecorder",
    "RecordedRequest",
    "RecordedStatement",
    "lexical_embedding",
]
