"""Constants shared by the embedding tests (a unique module name: tests/ has no packages)."""

KEY = "jina_test_key_0123456789abcdef"
HF_KEY = "hf_test_token_0123456789abcdef"
FAST = {"backoff_base": 0.001, "backoff_max": 0.005}
