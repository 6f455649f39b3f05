"""Where an API key may be sent.

The rules (issue 13), applied by ``BaseEmbeddingClient`` before any request:

- A key passed in code (``api_key=``) goes to the server the client was pointed at.
- A key found in the environment (``JINA_API_KEY``, ``HF_TOKEN``, ...) goes only to that
  provider's own hosts (``*.jina.ai``; ``*.huggingface.co``, ``*.hf.co`` and HF Inference
  Endpoints on ``*.huggingface.cloud``), or to the base URL set in the provider's own
  environment variable (``JINA_API_BASE_URL``, ``HF_INFERENCE_ENDPOINT``): whoever set the
  one set the other. A self-hosted server named in code (``base_url="http://tei:8080"``)
  never receives an environment key; it gets one only when ``api_key=`` is passed.
- A key sent over plain ``http://`` to a host other than this machine logs a warning once
  per client: anyone on the network path can read it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

import httpx

__all__ = ["HF_HOSTS", "JINA_HOSTS", "host_of", "is_loopback", "is_provider_host"]

JINA_HOSTS = ("jina.ai",)
HF_HOSTS = ("huggingface.co", "hf.co", "huggingface.cloud")


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
