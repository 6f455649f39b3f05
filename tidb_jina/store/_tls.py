"""One TLS policy for TiDB connections, applied identically to PyMySQL and aiomysql.

:func:`tls_policy` turns a connection URL and ``verify_tls`` into a :class:`TLSPolicy`
and the URL with every ``ssl*`` query option consumed (no driver ever sees one, so
aiomysql cannot fail on ``ssl_verify_cert`` and PyMySQL cannot quietly weaken a check).

The rules, in order:

1. An ``ssl*`` option we do not know, a value that is not a boolean, a missing CA file
   or contradicting options raise :class:`~tidb_jina.ConfigurationError`.
2. ``ssl_disabled=true`` / ``ssl_mode=DISABLED``: no TLS at all (a warning names the risk).
3. TLS is *required* for TiDB Cloud hosts (public, private-link, trailing dot, any case)
   and whenever the URL mentions TLS (``ssl_ca``, ``ssl_verify_cert``,
   ``ssl_verify_identity``, ``ssl_check_hostname``, ``ssl_mode=REQUIRED|VERIFY_*``,
   ``ssl_cert``): the client refuses to send the user name to a server that does not
   offer TLS, verifies the certificate against ``ssl_ca`` (or the system store) and checks
   the host name. Asking for one check never turns another off.
4. Opt-outs are explicit and each is logged once as a warning: ``verify_tls=False`` or
   ``ssl_verify_cert=false`` (encrypted, not authenticated); ``ssl_verify_identity=false``,
   ``ssl_check_hostname=false`` or ``ssl_mode=VERIFY_CA`` (certificate checked, host name
   not).
5. Otherwise (a self-managed host, nothing asked) the drivers' defaults apply.

PyMySQL refuses a server without TLS when it gets an ``ssl`` context; aiomysql does not
(it upgrades only when the greeting advertises TLS), so for aiomysql the policy adds a
connection class that checks the server's capabilities before it sends anything
(:func:`connect_requiring_tls`), with PyMySQL's error (2026, "SSL is required ...").
"""

from __future__ import annotations

import functools
import logging
import os
import re
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.engine import URL

from tidb_jina._errors import ConfigurationError

logger = logging.getLogger("tidb_jina")

# Where the system CA bundle lives: macOS (and the TiDB Cloud console's URL), Debian/Ubuntu,
# RHEL/Fedora. A URL naming one that this machine does not have means "the system store".
SYSTEM_CA_BUNDLES = (
    "/etc/ssl/cert.pem",
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
)
SUPPORTED_OPTIONS = (
    "ssl_ca",
    "ssl_capath",
    "ssl_cert",
    "ssl_key",
    "ssl_verify_cert",
    "ssl_verify_identity",
    "ssl_check_hostname",
    "ssl_disabled",
    "ssl_mode",
)
SSL_MODES = ("DISABLED", "REQUIRED", "VERIFY_CA", "VERIFY_IDENTITY")
CR_SSL_CONNECTION_ERROR = 2026  # the MySQL client error PyMySQL raises for the same refusal
_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off")
_TIDB_CLOUD_HOST = re.compile(r"(^|\.)tidbcloud\.com$")
_WARNED: set[str] = set()


def normalize_host(host: str | None) -> str:
    """Lower case, without the trailing dot of a fully qualified name."""
    return (host or "").rstrip(".").lower()


def is_tidb_cloud_host(host: str | None) -> bool:
    """Any TiDB Cloud host: public or private-link gateways, any case, trailing dot or not."""
    return bool(_TIDB_CLOUD_HOST.search(normalize_host(host)))


@dataclass(frozen=True)
class TLSPolicy:
    """What a connection must do about TLS.

    ``context`` is the client context (None: no TLS arranged by us); ``required`` means a
    server that does not offer TLS is refused before the user name is sent; ``disabled``
    means TLS was explicitly turned off; ``reason`` says why, for messages and ``doctor``.
    """

    context: ssl.SSLContext | None
    required: bool
    disabled: bool = False
    reason: str = "not asked for (self-managed host)"
    warnings: tuple[str, ...] = field(default=(), compare=False)

    @property
    def verified(self) -> bool:
        return self.context is not None and self.context.verify_mode == ssl.CERT_REQUIRED

    @property
    def checks_host_name(self) -> bool:
        return self.context is not None and self.context.check_hostname

    def connect_args(self, driver: str) -> dict[str, Any]:
        """Driver ``connect()`` arguments: ``driver`` is ``"pymysql"`` or ``"aiomysql"``."""
        if self.context is not None:
            if driver == "aiomysql":
                return {"ssl": self.context, "async_creator_fn": connect_requiring_tls}
            return {"ssl": self.context}  # PyMySQL: an SSLContext makes TLS required
        if self.disabled and driver == "pymysql":
            return {"ssl_disabled": True}  # else PyMySQL >= 1.2 tries TLS opportunistically
        return {}


def tls_policy(
    url: URL,
    verify_tls: bool = True,
    *,
    cloud: Callable[[str | None], bool] = is_tidb_cloud_host,
) -> tuple[URL, TLSPolicy]:
    """The URL without its ``ssl*`` options, and the TLS policy they and ``verify_tls`` ask.

    ``cloud`` decides whether a host is TiDB Cloud (injectable for tests).
    """
    options = _ssl_options(url)
    stripped = url.difference_update_query(list(options)) if options else url
    on_cloud = cloud(url.host)
    where = normalize_host(url.host) or "the server"
    mode = _mode(options)
    disabled = bool(_flag(options, "ssl_disabled")) or mode == "DISABLED"
    verify_cert = _flag(options, "ssl_verify_cert")
    host_check = _host_check(options, mode)
    files: dict[str, str] = {
        k: options[k] for k in ("ssl_ca", "ssl_capath", "ssl_cert", "ssl_key") if k in options
    }
    asks = bool(files) or verify_cert is not None or host_check is not None
    asks = asks or mode in ("REQUIRED", "VERIFY_CA", "VERIFY_IDENTITY")
    if disabled:
        if asks:
            raise ConfigurationError(
                "the connection URL both disables TLS (ssl_disabled / ssl_mode=DISABLED) and "
                "sets other ssl_* options; keep one or the other"
            )
        risk = "TiDB Cloud refuses such connections" if on_cloud else "anyone on the path can read"
        message = _warn_once(
            f"TLS is DISABLED for {where} (set in the URL): the user name, password and "
            f"every row cross the network in clear text ({risk})"
        )
        return stripped, TLSPolicy(None, False, True, "disabled in the URL", message)
    if not asks and not on_cloud:
        return stripped, TLSPolicy(None, False)
    if verify_cert is False and host_check:
        raise ConfigurationError(
            "the connection URL sets ssl_verify_cert=false but asks for host-name checking; "
            "a host name cannot be checked on an unverified certificate: drop one of them"
        )
    if "ssl_key" in files and "ssl_cert" not in files:
        raise ConfigurationError("ssl_key needs ssl_cert (the client certificate) in the URL")
    verify = verify_tls and verify_cert is not False
    check_host = verify and host_check is not False
    context = _context(files, verify=verify, check_host=check_host)
    reason = "TiDB Cloud host" if on_cloud else "asked for in the URL"
    warnings: tuple[str, ...] = ()
    if not verify:
        why = "verify_tls=False" if not verify_tls else "ssl_verify_cert=false in the URL"
        warnings = _warn_once(
            f"TLS certificate verification is OFF for {where} ({why}): the connection is "
            "encrypted but not authenticated, so a man in the middle can read and change "
            "everything, the password included"
        )
    elif not check_host:
        warnings = _warn_once(
            f"TLS host-name checking is OFF for {where} (ssl_verify_identity=false, "
            "ssl_check_hostname=false or ssl_mode=VERIFY_CA in the URL): any certificate "
            "the CA signed for another server is accepted for this one"
        )
    return stripped, TLSPolicy(context, True, False, reason, warnings)


def tls_hint(message: str) -> str:
    """How to fix a connection that failed on TLS ("" when ``message`` is about something
    else)."""
    if "SSL is required" in message:
        return (
            "The server did not offer TLS, so the user name and password were not sent. "
            "TiDB Cloud always offers it: check that the host and port are right and "
            "that nothing between you and the server strips TLS"
        )
    if "CERTIFICATE_VERIFY_FAILED" in message:
        return (
            "The server's TLS certificate was refused: for a certificate signed by your own "
            "CA add ?ssl_ca=/path/to/ca.pem to the URL; for a name mismatch connect with the "
            "host name the certificate carries (verify_tls=False turns verification off, "
            "which lets a man in the middle read everything)"
        )
    return ""


def url_mentions_tls(url: URL) -> bool:
    return any(key.lower().startswith("ssl") for key in url.query)


def _ssl_options(url: URL) -> dict[str, str]:
    options: dict[str, str] = {}
    for key, value in url.query.items():
        if not key.lower().startswith("ssl"):
            continue
        if key not in SUPPORTED_OPTIONS:
            raise ConfigurationError(
                f"unknown TLS option {key!r} in the connection URL; supported: "
                f"{', '.join(SUPPORTED_OPTIONS)} (e.g. ?ssl_ca=/etc/ssl/certs/"
                "ca-certificates.crt&ssl_verify_identity=true)"
            )
        if not isinstance(value, str):
            raise ConfigurationError(f"{key} is given more than once in the connection URL")
        options[key] = value
    return options


def _flag(options: dict[str, str], name: str) -> bool | None:
    if name not in options:
        return None
    value = options[name].strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ConfigurationError(
        f"{name}={options[name]!r} in the connection URL is not a boolean; use true or false"
    )


def _mode(options: dict[str, str]) -> str | None:
    if "ssl_mode" not in options:
        return None
    mode = options["ssl_mode"].strip().upper()
    if mode == "PREFERRED":
        raise ConfigurationError(
            "ssl_mode=PREFERRED falls back to plain text when TLS fails; it is not "
            "supported: use ssl_mode=VERIFY_IDENTITY (or leave ssl_mode out)"
        )
    if mode not in SSL_MODES:
        raise ConfigurationError(
            f"ssl_mode={options['ssl_mode']!r} is not one of {', '.join(SSL_MODES)}"
        )
    return mode


def _host_check(options: dict[str, str], mode: str | None) -> bool | None:
    """True/False when the URL says whether to check the host name, None when silent."""
    said = {
        v for v in (_flag(options, "ssl_verify_identity"), _flag(options, "ssl_check_hostname"))
    } - {None}
    if mode == "VERIFY_IDENTITY":
        said.add(True)
    elif mode == "VERIFY_CA":
        said.add(False)
    if len(said) > 1:
        raise ConfigurationError(
            "the connection URL both asks for and turns off host-name checking "
            "(ssl_verify_identity / ssl_check_hostname / ssl_mode); keep one"
        )
    return said.pop() if said else None


def _context(files: dict[str, str], *, verify: bool, check_host: bool) -> ssl.SSLContext:
    ca = _ca_file(files["ssl_ca"]) if "ssl_ca" in files else None
    capath = files.get("ssl_capath")
    if capath is not None and not os.path.isdir(capath):
        raise ConfigurationError(f"ssl_capath={capath!r} is not a directory")
    try:
        context = ssl.create_default_context(cafile=ca, capath=capath)
    except (OSError, ssl.SSLError, ValueError) as exc:
        raise ConfigurationError(
            f"cannot load the CA certificates in ssl_ca={ca!r} ({exc.__class__.__name__}): "
            "it must be a PEM file of CA certificates"
        ) from None
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    # As PyMySQL: accept CA certificates without the extensions strict mode insists on.
    context.verify_flags &= ~ssl.VERIFY_X509_STRICT
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    elif not check_host:
        context.check_hostname = False
    if "ssl_cert" in files:
        try:
            context.load_cert_chain(files["ssl_cert"], files.get("ssl_key"))
        except (OSError, ssl.SSLError) as exc:
            raise ConfigurationError(
                f"cannot load the client certificate ssl_cert={files['ssl_cert']!r} "
                f"({exc.__class__.__name__}); give PEM files in ssl_cert and ssl_key"
            ) from None
    return context


def _ca_file(path: str) -> str | None:
    """The CA file to load; None (the system store) for a system bundle this OS lacks."""
    if os.path.isfile(path):
        return path
    if path in SYSTEM_CA_BUNDLES:
        # The console's URL names the macOS bundle: on Linux the same trust roots live
        # elsewhere, and the system store is what the URL means.
        message = f"ssl_ca={path} is not on this machine: using the system CA store"
        if message not in _WARNED:
            _WARNED.add(message)
            logger.info(message)
        return None
    raise ConfigurationError(
        f"ssl_ca={path!r}: no such file. The system CA bundle is /etc/ssl/cert.pem on "
        "macOS, /etc/ssl/certs/ca-certificates.crt on Debian/Ubuntu and "
        "/etc/pki/tls/certs/ca-bundle.crt on RHEL/Fedora; or leave ssl_ca out to use the "
        "system store"
    )


def _warn_once(message: str) -> tuple[str, ...]:
    if message not in _WARNED:
        _WARNED.add(message)
        logger.warning(message)
    return (message,)


# --- aiomysql: refuse a server without TLS before sending anything ----------------------


async def connect_requiring_tls(*args: Any, **kwargs: Any) -> Any:
    """``aiomysql.connect`` for a connection that must be encrypted (as PyMySQL does)."""
    connection = _tls_required_connection_class()(*args, **kwargs)
    await connection._connect()
    return connection


@functools.cache
def _tls_required_connection_class() -> type:
    from aiomysql.connection import Connection
    from pymysql.constants import CLIENT
    from pymysql.err import OperationalError

    class TLSRequiredConnection(Connection):  # type: ignore[misc]
        """Checks the greeting's capabilities before the handshake response (which
        carries the user name and the password scramble)."""

        async def _request_authentication(self) -> None:
            if not self.server_capabilities & CLIENT.SSL:
                raise OperationalError(
                    CR_SSL_CONNECTION_ERROR,
                    "SSL is required but the server doesn't support it",
                )
            await super()._request_authentication()

    return TLSRequiredConnection
