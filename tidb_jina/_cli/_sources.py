"""Turn paths into chunks: text/markdown files split with overlap, JSONL records.

Ids are deterministic (sha256 of the source path and the chunk's position), so ingesting
the same files again replaces rows instead of adding duplicates.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Iterator
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
    """One file's chunks. ``chunked_file``: text file whose rows carry ``chunk`` indexes."""

    name: str
    chunks: list[Chunk] = field(default_factory=list)
    chunked_file: bool = False


def find_files(paths: Iterable[str]) -> list[Path]:
    """Every supported file under ``paths`` (folders recursively, hidden ones skipped)."""
    found: dict[Path, None] = {}
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise CLIError(f"{raw}: no such file or directory")
        if path.is_dir():
            for child in sorted(path.rglob("*")):
                if child.is_file() and _supported(child) and not _hidden(child, path):
                    found[child] = None
        elif _supported(path):
            found[path] = None
        else:
            raise CLIError(
                f"{raw}: unsupported file type; tidb-jina ingests "
                f"{', '.join(sorted(TEXT_SUFFIXES | JSONL_SUFFIXES))} files"
            )
    return list(found)


def _supported(path: Path) -> bool:
    return path.suffix.lower() in TEXT_SUFFIXES | JSONL_SUFFIXES


def _hidden(path: Path, root: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(root).parts)


def source_name(path: Path) -> str:
    """The path stored as ``source``: relative to the working directory when inside it."""
    resolved = path.resolve()
    try:
        return resolved.relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return resolved.as_posix()


def chunk_id(*parts: object) -> str:
    """A stable id from the source and the chunk's position."""
    key = "\x1f".join(str(p) for p in parts)
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:ID_HEX_CHARS]


def load(path: Path, size: int, overlap: int) -> Source:
    """The chunks of one file."""
    name = source_name(path)
    text = _read(path)
    if path.suffix.lower() in JSONL_SUFFIXES:
        return Source(name, list(_jsonl_chunks(name, text, size, overlap)))
    title = _title(text, path)
    chunks = [
        Chunk(chunk_id(name, i), piece, {"source": name, "chunk": i, "title": title})
        for i, piece in enumerate(split_text(text, size, overlap))
    ]
    return Source(name, chunks, chunked_file=True)


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise CLIError(f"{path}: not UTF-8 text") from None


def _title(text: str, path: Path) -> str:
    match = _HEADING.search(text)
    return match.group(1) if match else path.stem


def _jsonl_chunks(name: str, text: str, size: int, overlap: int) -> Iterator[Chunk]:
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        record = _record(name, lineno, line)
        base = str(record["id"]) if record.get("id") not in (None, "") else None
        metadata = _record_metadata(record, name, lineno)
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
