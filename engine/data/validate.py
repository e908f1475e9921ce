"""Read and check a conversation dataset without changing it.

Accepts a JSON array or JSON lines, UTF-8 with or without a BOM, in XTuner's conversation
format: ``{"conversation": [{"input": str, "output": str, "system": str (optional)}, ...]}``.
Every problem names where it is (file:line:column for JSON syntax, the record and field
otherwise) and how to fix it; all of them are listed at once, up to a limit.
"""

from __future__ import annotations

import difflib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from engine.errors import WizardError

MAX_PROBLEMS = 20
TURN_KEYS = ("input", "output", "system", "output_with_loss")
FULL_WIDTH = {
    "，": ",",
    "：": ":",
    "“": '"',
    "”": '"',
    "‘": "'",
    "’": "'",
    "｛": "{",
    "｝": "}",
    "［": "[",
    "］": "]",
}


@dataclass
class Problem:
    where: str
    message: str
    fix: str = ""
    level: str = "error"  # "error" stops training; "warning" is worth a look

    def __str__(self) -> str:
        text = f"{self.where}: {self.message}"
        if self.level == "warning":
            text = f"{self.where}: warning: {self.message}"
        return text + (f" (fix: {self.fix})" if self.fix else "")


@dataclass
class ValidationReport:
    """What is in the file: the records that parsed, and everything wrong with it."""

    path: str
    records: list[dict] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    format: str = ""  # "JSON array" | "JSON lines"
    bom: bool = False
    omitted: int = 0  # problems past the limit, counted but not listed
    omitted_errors: int = 0
    count: int | None = None  # records read (set where they were not all kept)

    @property
    def n_records(self) -> int:
        return len(self.records) if self.count is None else self.count

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.level == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.level == "warning"]

    @property
    def ok(self) -> bool:
        return not self.errors and not self.omitted_errors

    def lines(self, limit: int | None = None) -> list[str]:
        shown = self.problems if limit is None else self.problems[:limit]
        out = [str(p) for p in shown]
        more = len(self.problems) - len(shown) + self.omitted
        if more:
            out.append(f"... and {more} more")
        return out


class _Collector:
    def __init__(self, report: ValidationReport, limit: int):
        self.report, self.limit = report, limit

    def add(self, where: str, message: str, fix: str = "", level: str = "error") -> None:
        if len(self.report.problems) < self.limit:
            self.report.problems.append(Problem(where, message, fix, level))
        else:
            self.report.omitted += 1
            self.report.omitted_errors += level == "error"

    @property
    def full(self) -> bool:
        return self.report.omitted > 0


# -- reading ---------------------------------------------------------------------------------
def validate_file(
    path: str | Path, *, max_problems: int = MAX_PROBLEMS, keep_records: bool | None = None
) -> ValidationReport:
    """Check a dataset file; never raises for bad content, never writes.

    A file over :data:`STREAM_BYTES` is read in chunks (memory bounded by its largest
    record) and its records are kept only when ``keep_records`` is True; the count is in
    ``report.n_records``. Smaller files are read whole (every problem, with resync).
    """
    shown = str(path)
    report = ValidationReport(path=shown)
    out = _Collector(report, max_problems)
    p = Path(path)
    if not p.exists():
        out.add(
            shown,
            "no such file",
            "check the path, or make one: xtuner-wizard data generate --name NAME",
        )
        return report
    if p.is_dir():
        out.add(
            shown, "is a folder, not a file", "give the dataset file, e.g. datas/assistant.json"
        )
        return report
    try:
        size = p.stat().st_size
        if size > STREAM_BYTES:
            _validate_stream(p, shown, out, report, bool(keep_records))
            return report
        raw = p.read_bytes()
    except OSError as exc:
        out.add(shown, f"cannot read it: {exc.strerror}", "check the file's permissions")
        return report
    text = _decode(raw, shown, out, report)
    if text is None:
        return report
    if not text.strip():
        out.add(shown, "the file is empty", "make one: xtuner-wizard data generate --name NAME")
        return report
    first = len(text) - len(text.lstrip())
    head = text[first]
    try:
        if head == "[":
            report.format = "JSON array"
            _parse_array(text, first, shown, out, report)
        elif head == "{" and not _single_object(text, shown, out):
            report.format = "JSON lines"
            _parse_lines(text, shown, out, report)
        elif head != "{":
            _not_a_list(text, first, shown, out)
    except RecursionError:
        report.records.clear()
        out.add(
            shown,
            "the JSON is nested too deeply to read (brackets inside brackets, thousands deep)",
            'a record is {"conversation": [{"input": ..., "output": ...}]}: remove the extra [ and {',
        )
        return report
    if report.format and not report.records and not report.problems:
        out.add(
            shown,
            "holds no records",
            'add records like {"conversation": [{"input": ..., "output": ...}]}',
        )
    return report


def _decode(raw: bytes, shown: str, out: _Collector, report: ValidationReport) -> str | None:
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        out.add(
            shown,
            "the file is UTF-16",
            "save it as UTF-8 (most editors: Save with Encoding > UTF-8)",
        )
        return None
    report.bom = raw.startswith(b"\xef\xbb\xbf")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        col = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        if exc.end >= len(raw) and "unexpected end of data" in str(exc.reason):
            out.add(
                f"{shown}:{line}:{col}",
                "the file ends in the middle of a character: it is truncated (cut off)",
                "copy or download the whole file again, or regenerate it",
            )
            return None
        hint = "save it as UTF-8"
        try:
            raw.decode("gb18030")
            hint = "it looks like GBK/GB18030 text: save it as UTF-8"
        except UnicodeDecodeError:
            pass
        out.add(f"{shown}:{line}:{col}", f"not UTF-8 (byte 0x{raw[exc.start]:02x})", hint)
        return None


class _Lines:
    """Position -> line number, cheaply, for positions visited in increasing order."""

    def __init__(self, text: str):
        self.text, self.pos, self.line = text, 0, 1

    def at(self, pos: int) -> int:
        if pos < self.pos:
            self.pos, self.line = 0, 1
        self.line += self.text.count("\n", self.pos, pos)
        self.pos = pos
        return self.line


def _line_col(text: str, pos: int) -> tuple[int, int]:
    line = text.count("\n", 0, pos) + 1
    col = pos - (text.rfind("\n", 0, pos) + 1) + 1
    return line, col


def _skip_ws(text: str, i: int) -> int:
    n = len(text)
    while i < n and text[i] in " \t\r\n":
        i += 1
    return i


def _near(text: str, pos: int) -> str:
    start = text.rfind("\n", 0, pos) + 1
    end = text.find("\n", pos)
    end = len(text) if end < 0 else end
    lo, hi = max(start, pos - 18), min(end, pos + 12)
    snippet = text[lo:hi].strip()
    return f" near '{snippet}'" if snippet else ""


def _explain(msg: str, text: str, pos: int) -> tuple[str, str]:
    """A JSON decoder message, said plainly, with the fix."""
    ch = text[pos] if pos < len(text) else ""
    near = _near(text, pos)
    if ch in FULL_WIDTH:
        return (
            f"full-width '{ch}' where JSON needs '{FULL_WIDTH[ch]}'{near}",
            f"type '{FULL_WIDTH[ch]}' instead",
        )
    prev = text[:pos].rstrip()[-1:] if pos else ""
    if msg.startswith("Expecting property name"):
        if ch == "}" and prev == ",":
            return (f"a comma before '}}'{near}", "remove the comma after the last field")
        if ch == "'":
            return (f"single quotes{near}", 'use double quotes: "input"')
        return (
            f"a field name without double quotes{near}",
            'write field names in double quotes: "input"',
        )
    if msg.startswith("Expecting value"):
        if ch in "]}" and prev == ",":
            return (f"a comma before '{ch}'{near}", "remove the comma after the last item")
        if ch in "]}" and prev in "[{":
            closer = {"[": "]", "{": "}"}[prev]
            return (f"'{prev}' closed with '{ch}'{near}", f"close '{prev}' with '{closer}'")
        if ch in "]}" and prev == ":":
            return (f"no value after ':'{near}", "write the field's value after the ':'")
        if ch == "'":
            return (f"single quotes{near}", "use double quotes around strings")
        if ch == "":
            return ("the file ends too early", "the file may be cut off: close every [ and {")
        return (
            f"not a JSON value{near}",
            "strings need double quotes; true/false/null are lower case",
        )
    if msg.startswith("Expecting ',' delimiter"):
        if ch == '"' and prev in '"0123456789elu]}':
            return (f"a missing comma{near}", "put a comma between the two fields")
        if ch == "{" and prev == "}":
            return (f"a missing comma between records{near}", "put a comma between } and {")
        if ch == "":
            return ("the file ends too early", "the file may be cut off: close every [ and {")
        return (
            f"expected ',' or a closing bracket{near}",
            "add the missing comma, or close the string/bracket before it",
        )
    if msg.startswith("Expecting ':' delimiter"):
        return (f"a missing ':' after a field name{near}", 'write "field": value')
    if msg.startswith("Unterminated string"):
        return (
            "a string is never closed",
            'end it with a double quote; a quote inside text is written \\"',
        )
    if msg.startswith("Invalid control character"):
        return (f"a line break or tab inside a string{near}", "write it as \\n or \\t")
    if msg.startswith("Invalid \\escape") or msg.startswith("Invalid \\u"):
        return (f"a bad backslash escape{near}", "write a backslash as \\\\")
    if msg.startswith("Extra data"):
        return (f"more than one JSON value on this line{near}", "write one record per line")
    return (f"{msg[:1].lower()}{msg[1:]}{near}", "check the JSON syntax here")


def _syntax(out: _Collector, shown: str, text: str, pos: int, msg: str) -> None:
    line, col = _line_col(text, pos)
    message, fix = _explain(msg, text, pos)
    out.add(f"{shown}:{line}:{col}", f"JSON syntax: {message}", fix)


_NEXT_RECORD = re.compile(r'[,\[]\s*(\{\s*"conversation")')


def _resync(text: str, pos: int, indent: int) -> int | None:
    """Where the next record starts after a broken one: a line with the broken record's
    indentation starting with '{', or (minified files) the next '{"conversation"' after a comma.
    """
    candidates = []
    m = re.compile(r"\n([ \t]{" + str(indent) + r"})\{").search(text, pos)
    if m:
        candidates.append(m.end() - 1)
    m = _NEXT_RECORD.search(text, pos)
    if m:
        candidates.append(m.start(1))
    return min(candidates) if candidates else None


def _parse_array(
    text: str, start: int, shown: str, out: _Collector, report: ValidationReport
) -> None:
    decoder = json.JSONDecoder()
    lines = _Lines(text)
    n = len(text)
    i = start + 1
    index = 0
    last_comma: int | None = None
    while True:
        i = _skip_ws(text, i)
        if i >= n:
            _syntax(out, shown, text, n, "Expecting value")
            return
        if text[i] == "]":
            if last_comma is not None:
                line, col = _line_col(text, last_comma)
                out.add(
                    f"{shown}:{line}:{col}",
                    "JSON syntax: a comma after the last record",
                    "remove that comma",
                )
            i += 1
            break
        rec_start = i
        try:
            obj, end = decoder.raw_decode(text, i)
        except json.JSONDecodeError as exc:
            _syntax(out, shown, text, exc.pos, exc.msg)
            indent = rec_start - (text.rfind("\n", 0, rec_start) + 1)
            nxt = _resync(text, exc.pos, indent) if not out.full else None
            if nxt is None:
                return
            i, last_comma = nxt, None
            index += 1
            continue
        line = lines.at(rec_start)
        _check_record(obj, index, f"{shown}:{line}", out)
        report.records.append(obj)
        index += 1
        i = _skip_ws(text, end)
        last_comma = None
        if i < n and text[i] == ",":
            last_comma = i
            i += 1
            continue
        if i < n and text[i] == "]":
            i += 1
            break
        if i >= n:
            out.add(
                f"{shown}:{_line_col(text, n)[0]}",
                "JSON syntax: the list is never closed",
                "add ']' at the end (is the file cut off?)",
            )
            return
        _syntax(out, shown, text, i, "Expecting ',' delimiter")
        if text[i] != "{":
            nxt = _resync(text, i, rec_start - (text.rfind("\n", 0, rec_start) + 1))
            if nxt is None:
                return
            i = nxt
    i = _skip_ws(text, i)
    if i < n:
        line, col = _line_col(text, i)
        out.add(
            f"{shown}:{line}:{col}",
            f"extra text after the closing ']'{_near(text, i)}",
            "delete it, or move those records inside the list",
        )


def _single_object(text: str, shown: str, out: _Collector) -> bool:
    """A pretty-printed single object (not JSON lines): say what to do with it."""
    stripped = text.strip()
    if "\n" not in stripped:
        return False
    try:
        obj = json.loads(stripped)
    except json.JSONDecodeError:
        return False
    if not isinstance(obj, dict):
        return False
    listed = [
        k
        for k, v in obj.items()
        if isinstance(v, list) and v and isinstance(v[0], dict) and "conversation" in v[0]
    ]
    if listed:
        out.add(
            shown,
            f"the records are inside the field '{listed[0]}', not at the top level",
            f"make the file the list itself: move the contents of '{listed[0]}' out, [ ... ]",
        )
    else:
        out.add(
            shown,
            "the file is one JSON object, not a list of records",
            "wrap the record(s) in [ ] separated by commas, or write one record per line",
        )
    return True


def _not_a_list(text: str, first: int, shown: str, out: _Collector) -> None:
    try:
        obj = json.loads(text)
    except json.JSONDecodeError:
        line, col = _line_col(text, first)
        out.add(
            f"{shown}:{line}:{col}",
            f"not JSON: the file starts with{_near(text, first)}",
            "a dataset is a JSON list [ {...}, ... ] or one {...} record per line",
        )
        return
    out.add(
        shown,
        f"the file holds a JSON {_type(obj)}, not a list of records",
        "a dataset is a JSON list [ {...}, ... ] or one {...} record per line",
    )


def _parse_lines(text: str, shown: str, out: _Collector, report: ValidationReport) -> None:
    index = 0
    for number, line in enumerate(text.split("\n"), start=1):
        body = line.rstrip("\r")
        if not body.strip():
            continue
        try:
            obj = json.loads(body)
        except json.JSONDecodeError as exc:
            message, fix = _explain(exc.msg, body, exc.pos)
            out.add(f"{shown}:{number}:{exc.colno}", f"JSON syntax: {message}", fix)
            index += 1
            continue
        _check_record(obj, index, f"{shown}:{number}", out)
        report.records.append(obj)
        index += 1


# -- records -------------------------------------------------------------------------------
def _type(value: object) -> str:
    return {
        dict: "object",
        list: "list",
        str: "string",
        bool: "true/false",
        int: "number",
        float: "number",
        type(None): "null",
    }.get(type(value), type(value).__name__)


def _check_record(obj: object, index: int, at: str, out: _Collector) -> None:
    where = f"{at}: record {index}"
    example = '{"conversation": [{"input": "...", "output": "..."}]}'
    if not isinstance(obj, dict):
        out.add(where, f"is a {_type(obj)}, not an object", f"write each record as {example}")
        return
    if "conversation" not in obj:
        keys = list(obj)
        if "instruction" in obj:
            out.add(
                where,
                "is in alpaca format (instruction/output), not a conversation",
                'convert it: {"conversation": [{"input": instruction + input, "output": output}]}',
            )
        elif "messages" in obj:
            out.add(
                where,
                "is in messages (OpenAI) format, not a conversation",
                'convert it: {"conversation": [{"input": user text, "output": assistant text}]}',
            )
        elif "input" in obj or "output" in obj:
            out.add(
                where,
                "has input/output but no 'conversation' list around them",
                'wrap the turn: {"conversation": [{"input": ..., "output": ...}]}',
            )
        else:
            close = difflib.get_close_matches(
                "conversation", [k.lower() for k in keys], n=1, cutoff=0.7
            )
            if close:
                actual = next(k for k in keys if k.lower() == close[0])
                out.add(
                    f"{where}.{actual}", f"unknown field '{actual}'", "rename it to 'conversation'"
                )
            else:
                have = ", ".join(repr(k) for k in keys[:5]) or "nothing"
                out.add(
                    where, f"has no 'conversation' field (it has {have})", f"write it as {example}"
                )
        return
    conv = obj["conversation"]
    if not isinstance(conv, list):
        out.add(
            f"{where}.conversation",
            f"is a {_type(conv)}, not a list of turns",
            'write "conversation": [{"input": ..., "output": ...}]',
        )
        return
    if not conv:
        out.add(
            f"{where}.conversation",
            "is empty",
            'add a turn {"input": ..., "output": ...} or remove the record',
        )
        return
    for j, turn in enumerate(conv):
        _check_turn(turn, f"{where}.conversation[{j}]", out)


def _check_turn(turn: object, where: str, out: _Collector) -> None:
    if not isinstance(turn, dict):
        out.add(
            where,
            f"is a {_type(turn)}, not an object",
            'write each turn as {"input": "...", "output": "..."}',
        )
        return
    unknown = [k for k in turn if k not in TURN_KEYS]
    renamed = {}
    for key in unknown:
        close = difflib.get_close_matches(key.strip().lower(), TURN_KEYS, n=1, cutoff=0.6)
        if close and close[0] not in turn:
            renamed[close[0]] = key
        else:
            out.add(
                f"{where}.{key}",
                f"unknown field '{key}' (XTuner ignores it)",
                "remove it, or rename it to input/output/system",
                level="warning",
            )
    for key in ("input", "output"):
        if key in turn:
            continue
        if key in renamed:
            out.add(
                f"{where}.{renamed[key]}",
                f"unknown field '{renamed[key]}'",
                f"rename it to '{key}'",
            )
        else:
            what = "the question" if key == "input" else "the answer the model should learn"
            out.add(where, f"has no '{key}'", f'add "{key}": "{what}"')
    for key in ("input", "output", "system"):
        if key not in turn:
            continue
        value = turn[key]
        if value is None and key == "system":
            continue
        if not isinstance(value, str):
            out.add(
                f"{where}.{key}",
                f"is a {_type(value)}, not a string",
                "put the text in double quotes",
            )
            continue
        if not value.strip():
            if key == "output":
                out.add(
                    f"{where}.output",
                    "is empty",
                    "write the answer the model should learn, or remove the turn",
                )
            elif key == "input":
                out.add(
                    f"{where}.input",
                    "is empty: the model learns to say this unprompted",
                    "write the question, if that was not meant",
                    level="warning",
                )
    if "output_with_loss" in turn and not isinstance(turn["output_with_loss"], bool):
        out.add(
            f"{where}.output_with_loss",
            f"is a {_type(turn['output_with_loss'])}, not true/false",
            "write true or false (lower case, no quotes)",
        )


def load_conversations(path: str | Path) -> list[dict]:
    """The records of a valid dataset; a WizardError (one line) naming the first problem otherwise."""
    report = validate_file(path, keep_records=True)
    errors = report.errors
    if not errors:
        return report.records
    first = errors[0]
    more = len(errors) - 1 + report.omitted_errors
    message = first.message + (
        f" (and {more} more: xtuner-wizard data validate {report.path})" if more else ""
    )
    raise WizardError(message, where=first.where, fix=first.fix or None)


# -- large files: read in chunks, memory bounded by the largest record ----------------------
STREAM_BYTES = 8 * 1024 * 1024  # files above this are read in chunks, records not kept
CHUNK_BYTES = 1 << 20
MAX_RECORD_CHARS = 64 * 1024 * 1024


class _Chunks:
    """A file's text, decoded chunk by chunk (a BOM dropped)."""

    def __init__(self, path: Path):
        import codecs

        self.fh = open(path, "rb")  # noqa: SIM115 - closed by close()
        self.decoder = codecs.getincrementaldecoder("utf-8")()
        self.eof = False
        self.bom = False
        self.first = True

    def read(self) -> str:
        raw = self.fh.read(CHUNK_BYTES)
        if self.first:
            self.first = False
            if raw.startswith(b"\xef\xbb\xbf"):
                self.bom, raw = True, raw[3:]
        if not raw:
            self.eof = True
            return self.decoder.decode(b"", final=True)
        return self.decoder.decode(raw)

    def close(self) -> None:
        self.fh.close()


def _stream(path: Path, shown: str):
    """Yield ("format", name, bom), then ("record", line, obj) for each record, and
    ("problem", where, message, fix) for what stops the reading. Memory: the largest record
    plus a chunk, whatever the file's size."""
    src = _Chunks(path)
    buf, pos = "", 0
    cur, cur_line = 0, 1  # a cursor in buf and its line: lines are counted once, forward

    def here(p: int) -> tuple[int, int]:
        nonlocal cur, cur_line
        if p >= cur:
            cur_line += buf.count("\n", cur, p)
        else:  # back (an error before the cursor): count down
            cur_line -= buf.count("\n", p, cur)
        cur = p
        start = buf.rfind("\n", 0, p) + 1
        return cur_line, p - start + 1

    def trim() -> None:
        nonlocal buf, pos, cur
        here(pos)
        buf, pos, cur = buf[pos:], 0, 0

    def more() -> bool:
        nonlocal buf
        if src.eof:
            return False
        trim()
        buf += src.read()
        return True

    try:
        while True:
            pos = _skip_ws(buf, pos)
            if pos < len(buf) or not more():
                break
        if pos >= len(buf):
            yield ("problem", shown, "the file is empty", "make one: xtuner-wizard data generate")
            return
        array = buf[pos] == "["
        yield ("format", "JSON array" if array else "JSON lines", src.bom)
        if array:
            pos += 1
        decoder = json.JSONDecoder()
        expect_item = True
        seen = 0
        while True:
            pos = _skip_ws(buf, pos)
            while pos >= len(buf) and more():
                pos = _skip_ws(buf, pos)
            if pos >= len(buf):
                if array:
                    yield (
                        "problem",
                        f"{shown}:{here(pos)[0]}",
                        "JSON syntax: the list is never closed",
                        "add ']' at the end (is the file cut off?)",
                    )
                return
            if array and buf[pos] == "]" and expect_item and seen:
                line, col = here(pos)
                yield (
                    "problem",
                    f"{shown}:{line}:{col}",
                    "JSON syntax: a comma after the last record",
                    "remove that comma",
                )
                return
            if array and buf[pos] == "]":
                pos = _skip_ws(buf, pos + 1)
                while pos >= len(buf) and more():
                    pos = _skip_ws(buf, pos)
                if pos < len(buf):
                    line, col = here(pos)
                    yield (
                        "problem",
                        f"{shown}:{line}:{col}",
                        "extra text after the closing ']'",
                        "delete it, or move those records inside the list",
                    )
                return
            if array and not expect_item:
                if buf[pos] != ",":
                    line, col = here(pos)
                    message, fix = _explain("Expecting ',' delimiter", buf, pos)
                    yield ("problem", f"{shown}:{line}:{col}", f"JSON syntax: {message}", fix)
                    return
                pos += 1
                expect_item = True
                continue
            try:
                obj, end = decoder.raw_decode(buf, pos)
            except json.JSONDecodeError as exc:
                # an error at the chunk's end (a value, an escape, a string cut by the seam)
                at_end = exc.pos >= len(buf) - 16 or exc.msg.startswith("Unterminated string")
                if at_end and len(buf) - pos < MAX_RECORD_CHARS and more():
                    continue  # the record goes on in the next chunk
                line, col = here(exc.pos)
                message, fix = _explain(exc.msg, buf, exc.pos)
                yield ("problem", f"{shown}:{line}:{col}", f"JSON syntax: {message}", fix)
                return
            if end >= len(buf) and not src.eof and not array:
                # a JSON-lines record must end its line: make sure the number/word is whole
                if more():
                    continue
            yield ("record", here(pos)[0], obj)
            seen += 1
            pos = end
            expect_item = False
            if not array:
                expect_item = True
            if pos > CHUNK_BYTES:
                trim()
    except UnicodeDecodeError as exc:
        truncated = src.eof or "unexpected end of data" in str(exc.reason)
        where = f"{shown}:{here(len(buf))[0]}"
        if truncated:
            yield (
                "problem",
                where,
                "the file ends in the middle of a character: it is truncated (cut off)",
                "copy or download the whole file again, or regenerate it",
            )
        else:
            yield ("problem", where, "not UTF-8 (after this line)", "save it as UTF-8")
    except RecursionError:
        yield (
            "problem",
            shown,
            "the JSON is nested too deeply to read (brackets inside brackets, thousands deep)",
            'a record is {"conversation": [{"input": ..., "output": ...}]}: remove the extra [ and {',
        )
    finally:
        src.close()


def _validate_stream(
    path: Path, shown: str, out: _Collector, report: ValidationReport, keep: bool
) -> None:
    index = 0
    for event in _stream(path, shown):
        if event[0] == "format":
            report.format, report.bom = event[1], event[2]
        elif event[0] == "record":
            _check_record(event[2], index, f"{shown}:{event[1]}", out)
            if keep:
                report.records.append(event[2])
            index += 1
        else:
            out.add(event[1], event[2], event[3])
    report.count = index
    if report.format and not index and not report.problems:
        out.add(
            shown,
            "holds no records",
            'add records like {"conversation": [{"input": ..., "output": ...}]}',
        )


def iter_records(path: str | Path):
    """The records of a dataset one by one (memory: one record), for statistics and the
    estimate; what does not parse is skipped (``validate_file`` reports it)."""
    for event in _stream(Path(path), str(path)):
        if event[0] == "record":
            yield event[2]
