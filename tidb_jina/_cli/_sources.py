"""Turn paths into chunks: text/markdown files split with overlap, JSONL records.

A file's ``source`` name is its path inside the ingest root, led by the root's own name:
``tidb-jina ingest notes`` names ``notes/a.md`` so from any working directory (a file
given alone has its folder as root: ``notes/a.md`` too). Ids are deterministic (sha256
of the source name and the chunk's position), so ingesting the same files again, from
anywhere, replaces rows instead of adding duplicates.

A file that cannot be read (not UTF-8, empty) or a JSONL line that is not a record with
text is a *problem*: reported with its place and skipped, while the rest is ingested.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tidb_jina._cli import CLIError

TEXT_SUFFIXES = frozenset({".txt", ".text", ".md", ".markdown", ".rst"})
JSONL_SUFFIXES = frozenset({".jsonl", ".ndjson"})
ID_HEX_CHARS = 32  # 128 bits; fits langchain-community's VARCHAR(36) id column
_SEPARATORS = ("\n\n", "\n", ". ", " ")
_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+(.+?)\s*#*\s*$", re.MULTILINE)
_SPACE = re.compile(r"\s")


@dataclass(frozen=True)
class Chunk:
    """One row to store: its id, its text and its metadata."""

    id: str
    text: str
    metadata: dict[str, Any]


@dataclass
class Source:
    """One file's chunks. ``chunked_file``: text file whose rows carry ``chunk`` indexes.
    ``problems``: what was skipped, each with its place (``file`` or ``file:line``)."""

    name: str
    chunks: list[Chunk] = field(default_factory=list)
    chunked_file: bool = False
    problems: list[str] = field(default_factory=list)


@dataclass
class Found:
    """The files to ingest, with their source names, and what was left out."""

    files: dict[Path, str] = field(default_factory=dict)  # path -> source name
    roots: list[str] = field(default_factory=list)  # folder roots' names ("notes/")
    skipped: Counter[str] = field(default_factory=Counter)  # other file types, by suffix


def find_files(paths: Iterable[str], globs: Sequence[str] = ()) -> Found:
    """Every supported file under ``paths`` (folders recursively, hidden ones skipped),
    restricted to those whose source name matches one of ``globs`` (when given)."""
    found = Found()
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise CLIError(f"{raw}: no such file or directory")
        if path.is_dir():
            root = path.resolve()
            found.roots.append(root.name + "/")
            for child in sorted(path.rglob("*")):
                if not child.is_file() or _hidden(child, path):
                    continue
                name = root_name(root, child)
                if not _supported(child):
                    found.skipped[child.suffix.lower() or "(no extension)"] += 1
                elif _selected(name, globs):
                    found.files.setdefault(child, name)
        elif _supported(path):
            name = root_name(path.resolve().parent, path)
            if _selected(name, globs):
                found.files.setdefault(path, name)
        else:
            raise CLIError(
                f"{raw}: unsupported file type; tidb-jina ingests "
                f"{', '.join(sorted(TEXT_SUFFIXES | JSONL_SUFFIXES))} files"
            )
    return found


def root_name(root: Path, path: Path) -> str:
    """``path``'s source name: the root folder's name, then the path inside it."""
    return (Path(root.name) / path.resolve().relative_to(root)).as_posix()


def _selected(name: str, globs: Sequence[str]) -> bool:
    """``--glob`` patterns match the source name, the path inside the ingest root, or the
    file name (``*`` spans folders): ``*.md``, ``docs/*``, ``notes/docs/*.md``."""
    if not globs:
        return True
    forms = {name, name.split("/", 1)[-1], name.rsplit("/", 1)[-1]}
    return any(fnmatch.fnmatchcase(form, g) for form in forms for g in globs)


def _supported(path: Path) -> bool:
    return path.suffix.lower() in TEXT_SUFFIXES | JSONL_SUFFIXES


def _hidden(path: Path, root: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(root).parts)


def chunk_id(*parts: object) -> str:
    """A stable id from the source and the chunk's position."""
    key = "\x1f".join(str(p) for p in parts)
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:ID_HEX_CHARS]


def load(path: Path, name: str, size: int, overlap: int) -> Source:
    """The chunks of one file, stored under source ``name``; problems are collected."""
    try:
        text = _read(path)
    except CLIError as exc:
        return Source(name, problems=[f"{name}: {exc}"])
    if not text.strip():
        return Source(name, problems=[f"{name}: empty file (no text to embed)"])
    if path.suffix.lower() in JSONL_SUFFIXES:
        source = Source(name)
        source.chunks = list(_jsonl_chunks(name, text, size, overlap, source.problems))
        return source
    title = _title(text, path)
    chunks = [
        Chunk(chunk_id(name, i), piece, {"source": name, "chunk": i, "title": title})
        for i, piece in enumerate(split_text(text, size, overlap))
    ]
    return Source(name, chunks, chunked_file=True)


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise CLIError(
            f"not UTF-8 text (byte {exc.start}); convert it, e.g. iconv -f latin1 -t utf-8"
        ) from None
    except OSError as exc:
        raise CLIError(f"cannot read it ({exc.strerror or exc})") from None


def _title(text: str, path: Path) -> str:
    match = _HEADING.search(text)
    return match.group(1) if match else path.stem


def _jsonl_chunks(
    name: str, text: str, size: int, overlap: int, problems: list[str]
) -> Iterator[Chunk]:
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = _record(name, lineno, line)
            metadata = _record_metadata(record, name, lineno)
        except CLIError as exc:
            problems.append(str(exc))
            continue
        base = str(record["id"]) if record.get("id") not in (None, "") else None
        pieces = split_text(record["text"], size, overlap)
        for part, piece in enumerate(pieces):
            if base is not None:
                key = base if len(pieces) == 1 else f"{base}#{part}"
            else:
                key = chunk_id(name, lineno, part)
            meta = metadata if len(pieces) == 1 else {**metadata, "part": part}
            yield Chunk(key, piece, meta)


def _record(name: str, lineno: int, line: str) -> dict[str, Any]:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise CLIError(f"{name}:{lineno}: invalid JSON ({exc.msg})") from None
    text = record.get("text") if isinstance(record, dict) else None
    if not isinstance(text, str) or not text.strip():
        raise CLIError(f'{name}:{lineno}: expected a JSON object with a non-empty "text" string')
    return record


def _record_metadata(record: dict[str, Any], name: str, lineno: int) -> dict[str, Any]:
    nested = record.get("metadata")
    if nested is not None and not isinstance(nested, dict):
        raise CLIError(f'{name}:{lineno}: "metadata" must be a JSON object')
    extra = {k: v for k, v in record.items() if k not in ("id", "text", "metadata")}
    return {**extra, **(nested or {}), "source": name, "line": lineno}


def split_text(text: str, size: int, overlap: int) -> list[str]:
    """Chunks of at most ``size`` characters, consecutive ones sharing about ``overlap``.

    Cuts prefer paragraph breaks, then line breaks, sentence ends and spaces in the second
    half of the window; the next chunk starts at a word boundary.
    """
    text = text.strip()
    if len(text) <= size:
        return [text] if text else []
    chunks: list[str] = []
    start = 0
    while start < len(text):
        end = min(start + size, len(text))
        if end < len(text):
            end = _break_point(text, start, end)
        piece = text[start:end].strip()
        if piece:
            chunks.append(piece)
        if end >= len(text):
            break
        start = _word_start(text, max(end - overlap, start + 1), end)
    return chunks


def _break_point(text: str, start: int, end: int) -> int:
    floor = start + (end - start) // 2
    for separator in _SEPARATORS:
        at = text.rfind(separator, floor, end)
        if at != -1:
            return at + len(separator)
    return end


def _word_start(text: str, position: int, limit: int) -> int:
    if position == 0 or text[position - 1].isspace():
        return position
    match = _SPACE.search(text, position, limit)
    return match.end() if match else position


def check_chunking(size: int, overlap: int) -> None:
    """Reject sizes that cannot make progress."""
    if size < 1:
        raise CLIError(f"--chunk-size must be at least 1, got {size}")
    if not 0 <= overlap < size:
        raise CLIError(f"--chunk-overlap must be >= 0 and below --chunk-size ({size})")
