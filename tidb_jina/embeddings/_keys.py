"""Where an API key may be sent.

The rules (issue 13), applied by ``BaseEmbeddingClient`` before any request:

- A key passed in code (``api_key=``) goes to the server the client was pointed at.
- A key found in the environment (``JINA_API_KEY``, ``HF_TOKEN``, ...) goes only to that
  provider's own https hosts: ``*.jina.ai``; ``*.huggingface.co``, ``*.hf.co``, Spaces on
  ``*.hf.space`` and Inference Endpoints on ``*.endpoints.huggingface.cloud`` (the hosts
  langchain-huggingface also sends the token to). One more place for a Jina key: the URL
  in ``JINA_API_BASE_URL``, which by its name says the Jina API is served there (a
  gateway), and was set by whoever set the key. ``HF_INFERENCE_ENDPOINT`` gets no such
  pass: it names a server of its own (TEI has its own ``--api-key``), and a Hugging Face
  token means something only to Hugging Face. A self-hosted server named in code or in
  ``HF_INFERENCE_ENDPOINT`` gets a key only when ``api_key=`` is passed.
- A key sent over plain ``http://`` to a host other than this machine logs a warning once
  per client: anyone on the network path can read it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

import httpx

__all__ = ["HF_HOSTS", "JINA_HOSTS", "host_of", "is_loopback", "is_provider_host"]

JINA_HOSTS = ("jina.ai",)
HF_HOSTS = ("huggingface.co", "hf.co", "hf.space", "endpoints.huggingface.cloud")


def host_of(url: str) -> str:
    """The lower-case host of ``url`` without a trailing dot ("" when it has none)."""
    try:
        host = httpx.URL(url).host
    except (httpx.InvalidURL, TypeError, ValueError):
        return ""
    return host.lower().rstrip(".")


def is_provider_host(url: str, hosts: Iterable[str]) -> bool:
    """Whether ``url`` is on one of ``hosts`` or a subdomain of one, over https."""
    if not url.lower().startswith("https://"):
        return False
    host = host_of(url)
    return any(host == suffix or host.endswith("." + suffix) for suffix in hosts)


def is_loopback(url: str) -> bool:
    """Whether ``url`` points at this machine (``localhost``, 127.0.0.0/8, ``::1``)."""
    host = host_of(url)
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def is_plain_http_remote(url: str) -> bool:
    """Plain ``http://`` to a host other than this machine."""
    return url.lower().startswith("http://") and not is_loopback(url)
