"""A MySQL-protocol server on 127.0.0.1 that performs the real TLS upgrade, for tests.

``MySQLWireServer`` speaks just enough of the MySQL client/server protocol for PyMySQL and
aiomysql (through SQLAlchemy) to connect and run a few statements: a v10 greeting (with
or without the ``CLIENT_SSL`` capability), the SSL-request upgrade done with a server-side
``ssl.SSLContext``, any password accepted, then ``COM_QUERY`` answered by a
:class:`~tidb_jina.testing.MySQLRecorder` (so the dialect's connect-time queries and the
recorder's scripted replies work), ``COM_PING`` and ``COM_QUIT``.

What it records, for assertions about what crossed the network:

* ``plaintext``: every byte received before a TLS upgrade (all bytes, if none);
* ``sessions``: one :class:`WireSession` per connection: whether TLS was negotiated, the
  user name received (if any) and how the connection ended.

A test of "the client refuses a server that does not offer TLS before sending its user
name" runs ``MySQLWireServer(tls=context, offer_tls=False)`` (a man in the middle clearing
the capability bit) and asserts the user name is nowhere in ``plaintext``::

    with MySQLWireServer(tls=server_context) as server:
        engine = connect(server.url(query=f"?ssl_ca={ca_file}"))
        ...
    assert server.sessions[0].tls
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import struct
import threading
from dataclasses import dataclass
from typing import Any

import pymysql

from tidb_jina.testing._mysql_stub import SERVER_VERSION, MySQLRecorder

_CLIENT_SSL = 0x800
# LONG_PASSWORD, FOUND_ROWS, LONG_FLAG, CONNECT_WITH_DB, PROTOCOL_41, TRANSACTIONS,
# SECURE_CONNECTION, MULTI_STATEMENTS, MULTI_RESULTS, PLUGIN_AUTH, CONNECT_ATTRS,
# PLUGIN_AUTH_LENENC_CLIENT_DATA (no DEPRECATE_EOF: result sets end with EOF packets).
_CAPABILITIES = 0x1 | 0x2 | 0x4 | 0x8 | 0x200 | 0x2000 | 0x8000 | 0x10000 | 0x20000
_CAPABILITIES |= 0x80000 | 0x100000 | 0x200000
_UTF8MB4 = 45
_STATUS_AUTOCOMMIT = 0x0002
_COM_QUIT, _COM_INIT_DB, _COM_QUERY, _COM_PING = 0x01, 0x02, 0x03, 0x0E


@dataclass
class WireSession:
    """One client connection as the server saw it."""

    tls: bool = False
    user: str | None = None
    outcome: str = "open"  # "authenticated", "closed before auth", "tls failed: ...", ...
    statements: int = 0


class MySQLWireServer:
    """A threaded loopback MySQL server; use as a context manager.

    Args:
        tls: the server-side context (certificate and key); None offers no TLS.
        offer_tls: advertise ``CLIENT_SSL`` in the greeting (default: when ``tls`` is set).
            Read at each greeting, so a test can change it between connections.
        recorder: answers the queries (default: a new ``MySQLRecorder``).
        break_upgrade: answer the client's SSL request without TLS: ``"close"`` hangs
            up, ``"plaintext"`` sends a clear-text OK packet instead of a TLS handshake
            (a server that advertises TLS and then fails the upgrade).
        bind: the loopback address to listen on (``"::1"`` for IPv6).
    """

    def __init__(
        self,
        *,
        tls: ssl.SSLContext | None = None,
        offer_tls: bool | None = None,
        recorder: MySQLRecorder | None = None,
        break_upgrade: str | None = None,
        bind: str = "127.0.0.1",
    ) -> None:
        self.bind = bind
        self.tls = tls
        self.break_upgrade = break_upgrade
        self.offer_tls = tls is not None if offer_tls is None else offer_tls
        self.recorder = recorder or MySQLRecorder()
        self.plaintext = bytearray()
        self.sessions: list[WireSession] = []
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._threads: list[threading.Thread] = []
        self._sockets: list[socket.socket] = []
        self._stopping = threading.Event()

    # --- lifecycle ----------------------------------------------------------------------

    def __enter__(self) -> MySQLWireServer:
        family = socket.AF_INET6 if ":" in self.bind else socket.AF_INET
        listener = socket.socket(family, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.bind, 0))
        listener.listen(16)
        listener.settimeout(0.05)
        self._listener = listener
        thread = threading.Thread(target=self._accept_loop, name="mysql-wire", daemon=True)
        thread.start()
        self._threads.append(thread)
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._stopping.set()
        with self._lock:
            for sock in self._sockets:  # clients may still hold pooled connections
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
        for thread in list(self._threads):
            thread.join(timeout=5)
        if self._listener is not None:
            self._listener.close()

    def drop_connections(self) -> None:
        """Hang up on every client connection (as a server restart or an idle timeout
        does); the server keeps accepting new ones."""
        with self._lock:
            for sock in self._sockets:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    @property
    def port(self) -> int:
        assert self._listener is not None, "use the server in a with block"
        return int(self._listener.getsockname()[1])

    def url(
        self,
        *,
        user: str = "wire_user",
        password: str = "wire-password",
        host: str = "127.0.0.1",
        query: str = "",
    ) -> str:
        """A ``mysql+pymysql://`` URL for this server (``host`` must resolve to 127.0.0.1)."""
        return f"mysql+pymysql://{user}:{password}@{host}:{self.port}/test{query}"

    @property
    def users(self) -> list[str]:
        """User names received, in order (over TLS or not)."""
        return [s.user for s in self.sessions if s.user is not None]

    # --- the server ---------------------------------------------------------------------

    def _accept_loop(self) -> None:
        assert self._listener is not None
        while not self._stopping.is_set():
            try:
                sock, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            session = WireSession()
            with self._lock:
                self.sessions.append(session)
                self._sockets.append(sock)
            thread = threading.Thread(
                target=self._serve, args=(sock, session), name="mysql-wire-conn", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def _serve(self, sock: socket.socket, session: WireSession) -> None:
        sock.settimeout(10)
        conn = _Packets(sock, self)
        try:
            conn.send(self._greeting())
            payload = conn.read()
            if payload is None:
                session.outcome = "closed before auth"
                return
            flags = struct.unpack("<I", payload[:4])[0]
            if len(payload) == 32 and flags & _CLIENT_SSL:  # an SSL request: upgrade
                if self.tls is None or self.break_upgrade == "close":
                    session.outcome = "client asked for TLS, none offered"
                    return
                if self.break_upgrade == "plaintext":
                    conn.send(_ok())
                    conn.read()  # whatever the client sends next is recorded as plaintext
                    session.outcome = "upgrade answered in plain text"
                    return
                try:
                    conn.sock = self.tls.wrap_socket(sock, server_side=True)
                except (ssl.SSLError, OSError) as exc:
                    session.outcome = f"tls failed: {exc.__class__.__name__}"
                    return
                conn.secure = session.tls = True
                with self._lock:  # wrapping detached the plain socket: hang up on this one
                    self._sockets.append(conn.sock)
                payload = conn.read()
                if payload is None:
                    session.outcome = "closed before auth"
                    return
            end = payload.index(b"\0", 32)
            session.user = payload[32:end].decode("utf-8", "replace")
            conn.send(_ok())
            session.outcome = "authenticated"
            self._commands(conn, session)
        except (OSError, ValueError, struct.error) as exc:
            if session.outcome == "open":
                session.outcome = f"error: {exc.__class__.__name__}"
        finally:
            with contextlib.suppress(OSError):
                conn.sock.close()

    def _greeting(self) -> bytes:
        caps = _CAPABILITIES | (_CLIENT_SSL if self.offer_tls else 0)
        salt = b"abcdefghijklmnopqrst"  # 20 bytes of scramble (any password is accepted)
        return (
            b"\x0a"
            + SERVER_VERSION.encode()
            + b"\0"
            + struct.pack("<I", 1)
            + salt[:8]
            + b"\0"
            + struct.pack("<H", caps & 0xFFFF)
            + bytes([_UTF8MB4])
            + struct.pack("<H", _STATUS_AUTOCOMMIT)
            + struct.pack("<H", caps >> 16)
            + bytes([21])
            + b"\0" * 10
            + salt[8:]
            + b"\0"
            + b"mysql_native_password\0"
        )

    def _commands(self, conn: _Packets, session: WireSession) -> None:
        while True:
            conn.seq = 0
            payload = conn.read()
            if payload is None or payload[:1] == bytes([_COM_QUIT]):
                return
            command = payload[0]
            if command in (_COM_PING, _COM_INIT_DB):
                conn.send(_ok())
            elif command == _COM_QUERY:
                session.statements += 1
                for packet in self._query(payload[1:].decode("utf-8")):
                    conn.send(packet)
            else:
                conn.send(_err(1047, "unknown command"))

    def _query(self, sql: str) -> list[bytes]:
        from tidb_jina.testing._mysql_stub import RecordedStatement, _kind

        self.recorder._record(RecordedStatement(_kind(sql), sql, len(sql.encode())))
        try:
            names, rows, rowcount = self.recorder._answer(sql)
        except pymysql.err.MySQLError as exc:
            code, message = exc.args[0], str(exc.args[1])
            return [_err(code, message)]
        if not names:
            return [_ok(rowcount)]
        packets = [_lenenc_int(len(names))]
        first = rows[0] if rows else ()
        for i, name in enumerate(names):
            integer = i < len(first) and isinstance(first[i], int)
            packets.append(_column(name, integer))
        packets.append(_eof())
        for row in rows:
            packets.append(b"".join(_value(v) for v in row))
        packets.append(_eof())
        return packets


class _Packets:
    """MySQL packet framing over a socket that may be upgraded to TLS mid-stream."""

    def __init__(self, sock: socket.socket, server: MySQLWireServer) -> None:
        self.sock = sock
        self.server = server
        self.secure = False
        self.seq = 0

    def _recv(self, n: int) -> bytes | None:
        data = bytearray()
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                return None
            data += chunk
            if not self.secure:
                with self.server._lock:
                    self.server.plaintext += chunk
        return bytes(data)

    def read(self) -> bytes | None:
        header = self._recv(4)
        if header is None:
            return None
        length = header[0] | header[1] << 8 | header[2] << 16
        self.seq = (header[3] + 1) % 256
        return self._recv(length) if length else b""

    def send(self, payload: bytes) -> None:
        header = struct.pack("<I", len(payload))[:3] + bytes([self.seq])
        self.sock.sendall(header + payload)
        self.seq = (self.seq + 1) % 256


def _lenenc_int(n: int) -> bytes:
    if n < 251:
        return bytes([n])
    if n < 1 << 16:
        return b"\xfc" + struct.pack("<H", n)
    if n < 1 << 24:
        return b"\xfd" + struct.pack("<I", n)[:3]
    return b"\xfe" + struct.pack("<Q", n)


def _lenenc_str(data: bytes) -> bytes:
    return _lenenc_int(len(data)) + data


def _ok(affected: int = 0) -> bytes:
    return (
        b"\x00"
        + _lenenc_int(affected)
        + _lenenc_int(0)
        + struct.pack("<H", _STATUS_AUTOCOMMIT)
        + struct.pack("<H", 0)
    )


def _eof() -> bytes:
    return b"\xfe" + struct.pack("<H", 0) + struct.pack("<H", _STATUS_AUTOCOMMIT)


def _err(code: int, message: str) -> bytes:
    return b"\xff" + struct.pack("<H", code) + b"#HY000" + message.encode("utf-8")


def _column(name: str, integer: bool) -> bytes:
    field_type, charset = (0x08, 63) if integer else (0xFD, _UTF8MB4)
    encoded = name.encode("utf-8")
    return (
        _lenenc_str(b"def")
        + _lenenc_str(b"")
        + _lenenc_str(b"")
        + _lenenc_str(b"")
        + _lenenc_str(encoded)
        + _lenenc_str(encoded)
        + _lenenc_int(0x0C)
        + struct.pack("<H", charset)
        + struct.pack("<I", 1024)
        + bytes([field_type])
        + struct.pack("<H", 0)
        + bytes([0])
        + b"\0\0"
    )


def _value(value: Any) -> bytes:
    if value is None:
        return b"\xfb"
    return _lenenc_str(str(value).encode("utf-8"))
