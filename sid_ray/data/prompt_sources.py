"""Prompt sources read with Ray Data, normalised, every dropped line counted.

`data.prompts` names one or more sources (';'-separated): .txt files (one prompt a line), .jsonl or
.json files (objects with the `data.prompt_column` key; a .json file may also be one array of
them), .parquet files (the `data.prompt_column` column); each a file, a folder of such files or a
glob, local or on s3:// / gs:// (any URI pyarrow's filesystems open). Files are read in a fixed
order (sources in order, each one's files sorted, lines in file order), so the prompt list, and
with it the training stream, is the same on every machine.

Bad data never crashes a read and is never dropped silently: an empty file, a line that is not
UTF-8, a json line that does not parse or lacks the field, a null parquet value are counted by
kind in `PromptSet.counts` (the embedding job writes them into its manifest and summary). A
source that names nothing, a parquet file without the column, or sources that yield no prompt at
all are refused at start with a `ConfigError` naming the source.
"""

from __future__ import annotations

import fnmatch
import glob
import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sid_ray.config.schema import ConfigError, DataConfig
from sid_ray.data.storage import filesystem_from_uri, ray_read_args

TEXT_SUFFIXES = (".txt",)
JSON_SUFFIXES = (".jsonl", ".json")
PARQUET_SUFFIXES = (".parquet",)
SUFFIXES = TEXT_SUFFIXES + JSON_SUFFIXES + PARQUET_SUFFIXES

# the kinds of dropped lines, in the order summaries print them
EMPTY_FILE = "empty_file"
BLANK_LINE = "blank_line"
NOT_UTF8 = "not_utf8"
BAD_JSON = "bad_json"
MISSING_FIELD = "missing_field"
NOT_TEXT = "not_text"
TOO_SHORT = "too_short"
TOO_LONG = "too_long"
DUPLICATE = "duplicate"


@dataclass
class PromptSet:
    """The run's prompts in stream order, and what reading them counted.

    `counts`: "files", "lines" (rows read), "kept", and one entry per kind of dropped row.
    """

    prompts: list[str]
    counts: dict[str, int] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)

    def summary(self) -> str:
        dropped = {k: v for k, v in self.counts.items() if k not in ("files", "lines", "kept") and v}
        text = f"{self.counts.get('kept', 0)} prompts from {self.counts.get('files', 0)} file(s)"
        return text + (f"; dropped: {dropped}" if dropped else "; nothing dropped")


def prompt_hash(prompt: str) -> str:
    """The prompt's key in the embedding cache and the evaluation split (hex, 32 digits)."""
    return hashlib.sha256(prompt.encode("utf-8")).hexdigest()[:32]


def is_eval_prompt(prompt: str, fraction: float) -> bool:
    """Whether `prompt` is held out for evaluation: its hash, read as a number in [0, 1), is below
    `fraction`. A pure function of the text, so the split never moves a prompt across sides as
    sources grow."""
    return fraction > 0 and int(prompt_hash(prompt)[:16], 16) / 2**64 < fraction


def split_prompts(prompts: list[str], fraction: float) -> tuple[list[str], list[str]]:
    """(training prompts, held-out evaluation prompts), each in the list's order."""
    held = [is_eval_prompt(p, fraction) for p in prompts]
    return [p for p, h in zip(prompts, held, strict=True) if not h], [
        p for p, h in zip(prompts, held, strict=True) if h
    ]


def resolve_files(source: str) -> list[str]:
    """The prompt files `source` names: a file, a folder of prompt files or a glob (sorted)."""
    if "://" in source:
        return _remote_files(source)
    path = Path(source).expanduser()
    if path.is_dir():
        files = sorted(str(p) for p in path.iterdir() if p.suffix.lower() in SUFFIXES and p.is_file())
    elif glob.has_magic(str(path)):
        files = sorted(m for m in glob.glob(str(path)) if Path(m).is_file())
    else:
        files = [str(path)] if path.is_file() else []
    if not files:
        raise ConfigError(
            f"data.prompts: {source} names no prompt file (give .txt, .jsonl, .json or .parquet "
            "files, a folder of them or a glob)"
        )
    return [str(Path(f).resolve()) for f in files]


def _remote_files(source: str) -> list[str]:
    """Files of a URI through pyarrow's filesystem for its scheme (s3, gs, file, ...); a glob may
    only be in the last path component (object stores list one prefix at a time)."""
    import pyarrow.fs

    scheme = source.split("://", 1)[0]
    pattern = None
    if glob.has_magic(source):
        source, pattern = source.rsplit("/", 1)
    fs, path = filesystem_from_uri(source)
    info = fs.get_file_info(path)
    if info.type == pyarrow.fs.FileType.File and pattern is None:
        paths = [path]
    elif info.type == pyarrow.fs.FileType.Directory:
        listed = fs.get_file_info(pyarrow.fs.FileSelector(path, recursive=False))
        paths = sorted(i.path for i in listed if i.type == pyarrow.fs.FileType.File)
        keep = (lambda name: fnmatch.fnmatch(name, pattern)) if pattern else _has_prompt_suffix
        paths = [p for p in paths if keep(p.rsplit("/", 1)[-1])]
    else:
        paths = []
    if not paths:
        raise ConfigError(f"data.prompts: {source} names no prompt file")
    return [f"{scheme}://{p.lstrip('/')}" if scheme != "file" else f"file://{p}" for p in paths]


def _has_prompt_suffix(name: str) -> bool:
    return name.lower().endswith(SUFFIXES)


def _suffix(file: str) -> str:
    suffix = Path(file.split("?")[0]).suffix.lower()
    if suffix not in SUFFIXES:
        raise ConfigError(f"data.prompts: {file} must end in .txt, .jsonl, .json or .parquet")
    return suffix


def source_files(sources: str) -> list[str]:
    """Every file of the ';'-separated `data.prompts`, in read order."""
    files = []
    for source in (s.strip() for s in sources.split(";")):
        if source:
            files += resolve_files(source)
    for file in files:
        _suffix(file)
    return files


class _ParseLines:
    """Ray Data flat_map: one whole text or json file -> one row per line (or array item), with
    the text or the reason it cannot be used. Every row has the same columns."""

    def __init__(self, column: str, order: dict[str, int]):
        self.column, self.order = column, order

    def __call__(self, row: dict) -> list[dict]:
        path, data = str(row["path"]), bytes(row["bytes"])
        file_index = self.order[_normal_path(path)]
        if not data.strip():
            return [_row(file_index, 0, "", EMPTY_FILE)]
        is_json = _suffix(path) in JSON_SUFFIXES
        if is_json and data.lstrip()[:1] == b"[":
            return self._json_array(file_index, data)
        out = []
        for line_no, raw in enumerate(data.splitlines()):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                out.append(_row(file_index, line_no, "", NOT_UTF8))
                continue
            if not text.strip():
                out.append(_row(file_index, line_no, "", BLANK_LINE))  # as Ray's read_text drops
            elif is_json:
                out.append(_json_row(file_index, line_no, text, self.column))
            else:
                out.append(_row(file_index, line_no, text, ""))
        return out

    def _json_array(self, file_index: int, data: bytes) -> list[dict]:
        try:
            items = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            return [_row(file_index, 0, "", BAD_JSON)]
        return [_value_row(file_index, i, item, self.column) for i, item in enumerate(items)]


def _row(file_index: int, line: int, prompt: str, problem: str) -> dict:
    return {"file": file_index, "line": line, "prompt": prompt, "problem": problem}


def _json_row(file_index: int, line: int, text: str, column: str) -> dict:
    try:
        item = json.loads(text)
    except json.JSONDecodeError:
        return _row(file_index, line, "", BAD_JSON)
    return _value_row(file_index, line, item, column)


def _value_row(file_index: int, line: int, item, column: str) -> dict:
    value = item.get(column) if isinstance(item, dict) else None
    if value is None:
        return _row(file_index, line, "", MISSING_FIELD)
    if not isinstance(value, str):
        return _row(file_index, line, "", NOT_TEXT)
    return _row(file_index, line, value, "")


def _normal_path(path: str) -> str:
    """Ray Data reports local paths without a scheme and remote ones without theirs."""
    return path.split("://", 1)[-1].rstrip("/")


class _ParquetRows:
    """Ray Data map_batches: a parquet batch (with its file path) -> the common row columns."""

    def __init__(self, column: str, order: dict[str, int]):
        self.column, self.order = column, order

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        values = batch[self.column]
        problems = [MISSING_FIELD if v is None else ("" if isinstance(v, str) else NOT_TEXT) for v in values]
        return {
            "file": np.asarray([self.order[_normal_path(str(p))] for p in batch["path"]], np.int64),
            # a file's rows arrive in file order (preserve_order); the stable sort keeps it
            "line": np.zeros(len(values), np.int64),
            "prompt": np.asarray(
                [v if p == "" else "" for v, p in zip(values, problems, strict=True)], object
            ),
            "problem": np.asarray(problems, object),
        }


def _check_parquet_column(files: list[str], column: str) -> None:
    """Refuse, before reading, a parquet file that has no `column` (naming it and its columns)."""
    import pyarrow.parquet as pq

    for file in files:
        if "://" in file:
            fs, path = filesystem_from_uri(file)
            schema = pq.read_schema(fs.open_input_file(path))
        else:
            schema = pq.read_schema(file)
        if column not in schema.names:
            raise ConfigError(
                f"data.prompt_column: {file} has no column {column!r}; columns: {sorted(schema.names)}"
            )


def read_prompt_set(data: DataConfig) -> PromptSet:
    """Read, clean and count the prompts of `data.prompts` (see the module docstring).

    Rows are stripped; rows outside [min_prompt_chars, max_prompt_chars] and (with
    `dedupe_prompts`) repeats are dropped and counted. Raises ConfigError naming the source when
    nothing usable is left.
    """
    import ray.data

    files = source_files(data.prompts)
    order = {_normal_path(f): i for i, f in enumerate(files)}
    ctx = ray.data.DataContext.get_current()
    ctx.execution_options.preserve_order = True  # the files' order is the list's order
    rows = _read_rows(files, data.prompt_column, order)
    rows.sort(key=lambda r: (int(r["file"]), int(r["line"])))  # stable: parquet rows keep order
    counts = Counter({"files": len(files), "lines": len(rows)})
    prompts = _normalise(rows, data, counts)
    counts["kept"] = len(prompts)
    result = PromptSet(prompts, dict(counts), files)
    if not prompts:
        raise ConfigError(f"data.prompts: {data.prompts} yields no usable prompt ({result.summary()})")
    return result


def _read_rows(files: list[str], column: str, order: dict[str, int]) -> list[dict]:
    import ray.data

    lines = [f for f in files if _suffix(f) not in PARQUET_SUFFIXES]
    tables = [f for f in files if _suffix(f) in PARQUET_SUFFIXES]
    rows = []
    if lines:
        ds = ray.data.read_binary_files(**ray_read_args(lines), include_paths=True)
        rows += ds.flat_map(_ParseLines(column, order)).take_all()
    if tables:
        _check_parquet_column(tables, column)
        ds = ray.data.read_parquet(**ray_read_args(tables), columns=[column], include_paths=True)
        rows += ds.map_batches(_ParquetRows(column, order), batch_format="numpy").take_all()
        empty = set(range(len(files))) - {int(r["file"]) for r in rows}
        rows += [_row(i, 0, "", EMPTY_FILE) for i in sorted(empty) if _suffix(files[i]) in PARQUET_SUFFIXES]
    return rows


def _normalise(rows: list[dict], data: DataConfig, counts: Counter) -> list[str]:
    seen: set[str] = set()
    prompts = []
    for row in rows:
        if row["problem"]:
            counts[str(row["problem"])] += 1
            continue
        text = str(row["prompt"]).strip()
        if len(text) < data.min_prompt_chars:
            counts[TOO_SHORT] += 1
        elif data.max_prompt_chars and len(text) > data.max_prompt_chars:
            counts[TOO_LONG] += 1
        elif data.dedupe_prompts and text in seen:
            counts[DUPLICATE] += 1
        else:
            seen.add(text)
            prompts.append(text)
    return prompts
