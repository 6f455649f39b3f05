"""Provider options as small frozen config objects, declared once and shared.

``RetryPolicy``, ``BatchLimits`` and ``Timeouts`` are what ``JinaClient`` and
``HuggingFaceClient`` accept as ``retry=``, ``limits=`` and ``timeout=``; the LangChain and
LlamaIndex adapters pass them through unchanged. Each validates its values when built, so a
bad value fails at the line that wrote it.

The flat keyword spellings (``max_retries=3``, ``max_batch_size=64``, ...) that the README and
the langchain-community / llama-index compatibility aliases document still work: they are
listed once, in ``ClientOptions``, and ``build_config`` turns them into the config objects.
Giving a flat option and its config object together is an error, never a silent merge.
"""

from __future__ import annotations

import difflib
import inspect
import math
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, fields, replace
from typing import Any, TypeAlias, TypedDict, cast

import httpx

from tidb_jina._errors import ConfigurationError

__all__ = [
    "CLIENT_OPTIONS",
    "DEFAULT_BACKOFF_BASE",
    "DEFAULT_BACKOFF_MAX",
    "DEFAULT_MAX_RETRIES",
    "DEFAULT_MAX_RETRY_AFTER",
    "BatchLimits",
    "ClientConfig",
    "ClientOptions",
    "RetryPolicy",
    "Timeouts",
    "build_config",
    "named_parameters",
    "unknown_options_error",
]

DEFAULT_MAX_RETRIES = 5
"""Retries after the first attempt: 6 attempts. Waits between them total at most 15.5 s
(0.5 + 1 + 2 + 4 + 8) when the server sends no ``Retry-After``; with one, each wait can be
up to ``max_retry_after`` (120 s). ``RetryPolicy.worst_case_wait()`` computes it."""
DEFAULT_BACKOFF_BASE = 0.5
"""First backoff step in seconds; doubles each attempt (0.5, 1, 2, 4, 8, ...) with jitter."""
DEFAULT_BACKOFF_MAX = 30.0
"""Cap of one backoff step in seconds."""
DEFAULT_MAX_RETRY_AFTER = 120.0
"""A server's ``Retry-After`` is honoured up to this many seconds."""


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_count(owner: str, name: str, value: object, minimum: int, meaning: str) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ConfigurationError(
            f"{owner}.{name} must be an int >= {minimum} ({meaning}); got {value!r}"
        )


def _check_seconds(owner: str, name: str, value: object, *, positive: bool, hint: str) -> None:
    bound = "> 0" if positive else ">= 0"
    ok = _is_number(value) and math.isfinite(cast(float, value))
    if not ok or (cast(float, value) <= 0 if positive else cast(float, value) < 0):
        raise ConfigurationError(f"{owner}.{name} must be seconds {bound}{hint}; got {value!r}")


@dataclass(frozen=True)
class RetryPolicy:
    """How transient failures (429, 5xx, timeouts, dropped connections) are retried.

    >>> RetryPolicy(max_retries=2, backoff_base=0.1)  # 3 attempts, waits of ~0.1 s, ~0.2 s
    RetryPolicy(max_retries=2, backoff_base=0.1, backoff_max=30.0, max_retry_after=120.0)

    ``max_retries`` counts retries after the first attempt (0: fail at once). Wait ``n``
    (from 0) is drawn between half and all of ``step = min(backoff_max, backoff_base *
    2**n)`` ("equal jitter"); when the server sends ``Retry-After``, it is that value capped
    at ``max_retry_after``, plus up to ``step / 4``. ``worst_case_wait()`` is the longest
    total wait; each attempt also takes up to its timeout (``Timeouts.deadline``).
    """

    max_retries: int = DEFAULT_MAX_RETRIES
    backoff_base: float = DEFAULT_BACKOFF_BASE
    backoff_max: float = DEFAULT_BACKOFF_MAX
    max_retry_after: float = DEFAULT_MAX_RETRY_AFTER

    def worst_case_wait(self, *, retry_after: bool = False) -> float:
        """The most seconds spent waiting between attempts when every attempt fails:
        without ``Retry-After`` from the server, or (``retry_after=True``) with a long one
        on every answer.

        >>> RetryPolicy().worst_case_wait()  # 0.5 + 1 + 2 + 4 + 8
        15.5
        """
        total = 0.0
        for attempt in range(self.max_retries):
            step = min(self.backoff_max, self.backoff_base * 2**attempt)
            total += self.max_retry_after + step / 4 if retry_after else step
        return total

    def __post_init__(self) -> None:
        _check_count("RetryPolicy", "max_retries", self.max_retries, 0, "0 means no retries")
        for name in ("backoff_base", "backoff_max", "max_retry_after"):
            _check_seconds(
                "RetryPolicy", name, getattr(self, name), positive=False, hint=" (a finite number)"
            )


@dataclass(frozen=True)
class BatchLimits:
    """How many inputs and characters one request carries, and how many run at once.

    >>> BatchLimits(max_batch_size=64)  # the rest: the provider's defaults
    BatchLimits(max_batch_size=64, max_batch_chars=None, max_concurrency=None)

    ``None`` means the provider's default (Jina: 128 inputs, 200,000 characters, 5 in
    flight; Hugging Face: 32, 100,000, 4). Sync calls run batches on ``max_concurrency``
    threads, async calls as that many tasks.
    """

    max_batch_size: int | None = None
    max_batch_chars: int | None = None
    max_concurrency: int | None = None

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None:
                _check_count("BatchLimits", f.name, value, 1, "or None for the default")

    def over(self, defaults: BatchLimits) -> BatchLimits:
        """These limits, with ``defaults`` filling the fields left as ``None``."""
        given = {f.name: getattr(self, f.name) for f in fields(self)}
        return replace(defaults, **{k: v for k, v in given.items() if v is not None})


@dataclass(frozen=True)
class Timeouts:
    """HTTP timeouts in seconds: per phase, and for the whole call; ``None`` is no limit.

    >>> Timeouts(read=120.0)  # slow self-hosted server; connect still fails fast
    Timeouts(connect=10.0, read=120.0, write=60.0, pool=60.0, total=None)

    ``total`` bounds one HTTP call from connect to the last byte of the answer, so a server
    that trickles its answer cannot stretch a call past it (per-phase timeouts alone bound
    each socket read, not their sum). ``None`` means the longest of ``connect``, ``read``
    and ``write`` (see ``deadline``), so ``timeout=5`` anywhere a ``Timeouts`` is accepted
    means 5 seconds for every phase and for the whole call; an ``httpx.Timeout`` is
    accepted too. Each retry is a new call with a new deadline.
    """

    connect: float | None = 10.0
    read: float | None = 60.0
    write: float | None = 60.0
    pool: float | None = 60.0
    total: float | None = None

    @property
    def deadline(self) -> float | None:
        """Seconds one HTTP call may take in all: ``total``, else the longest phase timeout
        (``None``, no deadline, when a phase is unbounded)."""
        if self.total is not None:
            return self.total
        phases = (self.connect, self.read, self.write)
        if any(value is None for value in phases):
            return None
        return max(cast(float, value) for value in phases)

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None:
                _check_seconds(
                    "Timeouts", f.name, value, positive=True, hint=" or None for no limit"
                )

    @classmethod
    def of(cls, value: TimeoutLike) -> Timeouts:
        """``value`` as ``Timeouts``: ``None`` is the default, a number applies to every phase."""
        if value is None:
            return cls()
        if isinstance(value, Timeouts):
            return value
        if isinstance(value, httpx.Timeout):
            return cls(value.connect, value.read, value.write, value.pool)
        if _is_number(value):
            seconds = float(value)
            return cls(seconds, seconds, seconds, seconds)  # deadline: the same seconds
        raise ConfigurationError(
            f"timeout must be seconds (a number), a tidb_jina.Timeouts or an httpx.Timeout; "
            f"got {value!r}"
        )

    def to_httpx(self) -> httpx.Timeout:
        return httpx.Timeout(connect=self.connect, read=self.read, write=self.write, pool=self.pool)


TimeoutLike: TypeAlias = float | Timeouts | httpx.Timeout | None
"""What ``timeout=`` accepts: seconds for every phase, ``Timeouts``, ``httpx.Timeout``, or
``None`` for the default (10 s to connect, 60 s for the rest)."""


class ClientOptions(TypedDict, total=False):
    """The flat keyword spellings of the ``RetryPolicy`` and ``BatchLimits`` fields.

    Kept so that ``JinaClient(max_retries=2)`` and the adapters' documented arguments keep
    working; ``None`` means "not given". ``tests/embeddings/test_config_objects.py`` checks
    that these keys are exactly the fields of the two config objects.
    """

    max_retries: int | None
    backoff_base: float | None
    backoff_max: float | None
    max_retry_after: float | None
    max_batch_size: int | None
    max_batch_chars: int | None
    max_concurrency: int | None


_GROUPS: tuple[tuple[str, type[RetryPolicy] | type[BatchLimits]], ...] = (
    ("retry", RetryPolicy),
    ("limits", BatchLimits),
)
CLIENT_OPTIONS: tuple[str, ...] = tuple(f.name for _, cls in _GROUPS for f in fields(cls))
"""Every flat option name, in declaration order."""


@dataclass(frozen=True)
class ClientConfig:
    """The resolved options of one client: every field of ``limits`` is set."""

    retry: RetryPolicy
    limits: BatchLimits
    timeouts: Timeouts


def build_config(
    where: str,
    *,
    retry: RetryPolicy | None,
    limits: BatchLimits | None,
    timeout: TimeoutLike,
    defaults: BatchLimits,
    options: Mapping[str, Any],
    valid: Iterable[str] = (),
) -> ClientConfig:
    """The one place flat options and config objects become a ``ClientConfig``.

    ``where`` names the caller in errors; ``valid`` lists its other parameters, so an
    unknown option's error can name every accepted one.
    """
    unknown = [name for name in options if name not in CLIENT_OPTIONS]
    if unknown:
        raise unknown_options_error(where, unknown, [*valid, *CLIENT_OPTIONS])
    given = {name: value for name, value in options.items() if value is not None}
    objects: dict[str, Any] = {"retry": retry, "limits": limits}
    built: dict[str, Any] = {}
    for param, cls in _GROUPS:
        names = [f.name for f in fields(cls)]
        flat = {name: given[name] for name in names if name in given}
        obj = objects[param]
        if obj is None:
            built[param] = cls(**flat)
            continue
        if not isinstance(obj, cls):
            raise ConfigurationError(
                f"{where}: {param}= must be a tidb_jina.{cls.__name__}, not "
                f"{type(obj).__name__}; e.g. {param}={cls.__name__}({names[0]}=...)"
            )
        if flat:
            spelled = ", ".join(f"{k}={v!r}" for k, v in flat.items())
            raise ConfigurationError(
                f"{where}: {spelled} and {param}= both given; {', '.join(flat)} "
                f"{'is a field' if len(flat) == 1 else 'are fields'} of {cls.__name__}, so "
                f"pass {param}={cls.__name__}({spelled}, ...) alone or drop {param}="
            )
        built[param] = obj
    return ClientConfig(built["retry"], built["limits"].over(defaults), Timeouts.of(timeout))


def named_parameters(func: Callable[..., Any]) -> list[str]:
    """The keyword names ``func`` declares (not ``self``, ``*args`` or ``**kwargs``)."""
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return [
        p.name
        for p in inspect.signature(func).parameters.values()
        if p.kind in kinds and p.name != "self"
    ]


def unknown_options_error(
    where: str, unknown: Collection[str], valid: Iterable[str]
) -> ConfigurationError:
    """``where got unknown options ...; did you mean ...? Valid options: ...``."""
    choices = sorted(set(valid))
    names = ", ".join(repr(name) for name in sorted(unknown))
    hints = [
        f"{match[0]} instead of {name}"
        for name in sorted(unknown)
        if (match := difflib.get_close_matches(name, choices, n=1))
    ]
    did_you_mean = f" (did you mean {', '.join(hints)}?)" if hints else ""
    noun = "option" if len(unknown) == 1 else "options"
    return ConfigurationError(
        f"{where} got unknown {noun} {names}{did_you_mean}. Valid options: {', '.join(choices)}"
    )
