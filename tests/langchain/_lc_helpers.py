"""Constants shared by the LangChain adapter tests (importable, unlike conftest)."""

API_KEY = "jina_test_key_0123456789"
DIMENSION = 64
E5 = "intfloat/multilingual-e5-large"
