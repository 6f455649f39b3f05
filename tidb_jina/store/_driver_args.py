"""Checking what reaches the MySQL drivers' ``connect()`` before any I/O.

Two jobs, both done when the engine is built (no connection is opened):

* TLS settings given in ``engine_args['connect_args']`` go through the same policy as
  the URL's (:mod:`tidb_jina.store._tls`). PyMySQL lets ``ssl_ca=...`` there replace the
  ``SSLContext`` we build, with host-name checking off unless ``ssl_verify_identity`` is
  also set, and an empty ``ssl={}`` means "TLS if the server offers it"; aiomysql
  accepts none of the ``ssl_*`` keywords and no ``ssl`` dict. :func:`fold_tls_args`
  moves them into the URL's ``ssl*`` options, so one policy decides for both drivers.
* A URL option or ``connect_args`` key the driver does not accept (``?foo=1``) would be a
  raw ``TypeError`` on first use; :func:`check_driver_args` makes it a
  :class:`~tidb_jina.ConfigurationError` that names the option and the accepted ones.
"""

from __future__ import annotations

import functools
import inspect
import ssl
from typing import Any

from sqlalchemy.engine import URL

from tidb_jina._errors import ConfigurationError
from tidb_jina.store._tls import SUPPORTED_OPTIONS, url_mentions_tls

# PyMySQL's ``ssl`` dict keys and the URL option each one means.
_SSL_DICT_KEYS = {
    "ca": "ssl_ca",
    "capath": "ssl_capath",
    "cert": "ssl_cert",
    "key": "ssl_key",
    "check_hostname": "ssl_check_hostname",
    "verify_mode": "ssl_verify_cert",
}
# Set by SQLAlchemy itself (or by us), never by the URL or the user's connect_args.
_SQLALCHEMY_ARGS = frozenset({"async_creator_fn", "plugin"})
_DRIVER_NAMES = {"pymysql": "PyMySQL", "aiomysql": "aiomysql"}


def fold_tls_args(url: URL, connect_args: dict[str, Any]) -> tuple[URL, dict[str, Any]]:
    """Move TLS settings out of ``connect_args`` into the URL's ``ssl*`` options.

    An ``ssl.SSLContext`` in ``connect_args['ssl']`` stays (the caller built it and it
    makes TLS required); ``ssl_*`` keywords and a PyMySQL ``ssl`` dict become URL options.
    """
    args = dict(connect_args)
    options: dict[str, str] = {}
    for key in [k for k in args if k.lower().startswith("ssl") and k != "ssl"]:
        if key not in SUPPORTED_OPTIONS:
            raise ConfigurationError(
                f"unknown TLS option {key!r} in engine_args['connect_args']; supported: "
                f"{', '.join(SUPPORTED_OPTIONS)}"
            )
        options[key] = _as_text(key, args.pop(key))
    given = args.get("ssl")
    if given is None:
        args.pop("ssl", None)
    elif isinstance(given, dict):
        args.pop("ssl")
        options.update(_from_ssl_dict(given, options))
    elif not isinstance(given, ssl.SSLContext):
        raise ConfigurationError(
            f"engine_args['connect_args']['ssl'] is a {type(given).__name__}; give an "
            "ssl.SSLContext, or TLS options in the URL (?ssl_ca=/path/ca.pem&"
            "ssl_verify_identity=true); ?ssl_disabled=true turns TLS off"
        )
    if not options:
        return url, args
    if "ssl" in args:
        raise ConfigurationError(
            "TLS is configured twice in engine_args['connect_args'] (an SSLContext in 'ssl' "
            f"and {', '.join(sorted(options))}); keep one"
        )
    if url_mentions_tls(url):
        raise ConfigurationError(
            "TLS is configured twice: in the URL (ssl_* options) and in "
            f"engine_args['connect_args'] ({', '.join(sorted(options))}); keep one"
        )
    return url.update_query_dict(options), args


def check_driver_args(url: URL, connect_args: dict[str, Any], driver: str) -> None:
    """Raise ConfigurationError for a URL option or connect_args key ``driver`` rejects."""
    accepted = _accepted(driver)
    for where, keys in (
        ("the connection URL (?{key}=...)", list(url.query)),
        ("engine_args['connect_args']", list(connect_args)),
    ):
        for key in keys:
            if key in accepted or key in _SQLALCHEMY_ARGS:
                continue
            place = where.format(key=key)
            others = "aiomysql" if driver == "pymysql" else "PyMySQL"
            also = " (only PyMySQL, the sync driver, takes it)" if key in _accepted(others) else ""
            raise ConfigurationError(
                f"{_DRIVER_NAMES[driver]} does not accept the option {key!r} given in "
                f"{place}{also}; remove it. Accepted: "
                f"{', '.join(sorted(accepted - {'self'}))}"
            )


@functools.cache
def _accepted(driver: str) -> frozenset[str]:
    if driver == "aiomysql":
        from aiomysql.connection import Connection as AioConnection

        function: Any = AioConnection.__init__
    else:
        from pymysql.connections import Connection

        function = Connection.__init__
    names = set(inspect.signature(function).parameters) - {"self"}
    # TLS goes through our policy, never to the driver as keywords.
    return frozenset(n for n in names if not n.startswith("ssl") or n == "ssl")


def _as_text(key: str, value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int) and value in (0, 1):
        return str(value)
    raise ConfigurationError(
        f"engine_args['connect_args'][{key!r}] is a {type(value).__name__}; give a path "
        "(ssl_ca, ssl_cert, ...) or true/false"
    )


def _from_ssl_dict(given: dict[str, Any], already: dict[str, str]) -> dict[str, str]:
    """PyMySQL's ``ssl`` dict as URL options; ``{}`` asks for TLS (verified)."""
    options: dict[str, str] = {}
    for key, value in given.items():
        name = _SSL_DICT_KEYS.get(key)
        if name is None:
            raise ConfigurationError(
                f"engine_args['connect_args']['ssl'] has the key {key!r}, which tidb-jina "
                f"does not apply; supported: {', '.join(_SSL_DICT_KEYS)} (or pass an "
                "ssl.SSLContext)"
            )
        if name in already:
            raise ConfigurationError(
                f"TLS option {name} is given twice in engine_args['connect_args']; keep one"
            )
        if key == "verify_mode" and isinstance(value, ssl.VerifyMode):
            value = value != ssl.CERT_NONE
        elif key == "verify_mode" and isinstance(value, str):
            value = value.strip().lower() not in ("none", "0", "false", "no", "off")
        options[name] = _as_text(f"ssl']['{key}", value)
    return options or {"ssl_mode": "REQUIRED"}


def guard_user_engine(engine: Any) -> None:
    """Give an ``Engine`` the caller built the TLS floor of the policy.

    A TiDB Cloud Engine with no TLS settings of its own would let PyMySQL fall back to
    clear text when a man in the middle strips TLS from the greeting: such an Engine gets
    required, verified TLS with host-name checking at each connect (a ``do_connect``
    hook; nothing else of the Engine changes). TLS settings the caller gave are used as
    given, by the driver's own rules, and a warning says so when they come from the URL.
    """
    if getattr(engine, "_tidb_jina_tls_guard", False):
        return
    if engine.dialect.driver not in _DRIVER_NAMES:
        return  # another driver (mysqlclient, ...): its TLS settings are the caller's
    from sqlalchemy import event

    from tidb_jina.store._tls import is_tidb_cloud_host, logger, tls_policy

    driver = "aiomysql" if engine.dialect.driver == "aiomysql" else "pymysql"
    if url_mentions_tls(engine.url):
        message = (
            f"the Engine for {engine.url.host} sets TLS options in its URL, which "
            f"{_DRIVER_NAMES[driver]} applies by its own rules (e.g. ssl_verify_cert=true "
            "without ssl_ca checks no host name); pass the URL itself to tidb-jina to get "
            "required, verified TLS with host-name checking"
        )
        logger.warning(message)

    def on_connect(dialect: Any, record: Any, cargs: Any, cparams: dict[str, Any]) -> None:
        host = cparams.get("host") or engine.url.host
        configured = cparams.get("ssl") or any(k.startswith("ssl_") for k in cparams)
        if configured or not is_tidb_cloud_host(host):
            return
        _, policy = tls_policy(engine.url.set(host=host, query={}))
        cparams.update(policy.connect_args(driver))

    event.listen(engine, "do_connect", on_connect)
    engine._tidb_jina_tls_guard = True
