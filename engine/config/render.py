"""Edit an XTuner config through its syntax: the source spans of ``ast`` nodes.

An edit replaces the text of one node (a top-level assignment's value, or a keyword's value
inside a ``dict(...)`` call), inserts a keyword, or removes one; everything else in the file
stays byte for byte what xtuner shipped, so the diff against the built-in shows exactly the
edits. After each edit the text is parsed again (configs are small: a parse is ~1 ms).

Paths into nested calls: ``("model", "llm")`` is the ``llm=dict(...)`` keyword of the
top-level ``model = dict(...)``; a list element is picked by its ``type``:
``("custom_hooks", "[type=EvaluateChatHook]")``.
"""

from __future__ import annotations

import ast
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from engine.errors import WizardError


@dataclass(frozen=True)
class Code:
    """Python source to put in the config as is (``torch.float32``, ``dict(...)``)."""

    text: str

    def __str__(self) -> str:
        return self.text


def py_source(value: Any) -> str:
    """Source for a Python value, in the black style of xtuner's configs (double quotes)."""
    if isinstance(value, Code):
        return value.text
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # a valid Python literal too
    if isinstance(value, bool) or value is None:
        return repr(value)
    if isinstance(value, float):
        text = repr(value)
        # 0.0002 -> 2e-4, as the configs write learning rates
        if "e" not in text and value != 0 and abs(value) < 1e-2:
            mant, exp = f"{value:e}".split("e")
            mant = mant.rstrip("0").rstrip(".")
            text = f"{mant}e{int(exp)}"
        return text
    if isinstance(value, int):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(py_source(v) for v in value) + "]"
    if isinstance(value, tuple):
        inner = ", ".join(py_source(v) for v in value)
        return f"({inner},)" if len(value) == 1 else f"({inner})"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{py_source(k)}: {py_source(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"cannot write {type(value).__name__} into a config")


def node_literal(node: ast.AST) -> Any:
    """The value of a literal node, or :class:`Code` with its source when not a literal."""
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return Code(ast.unparse(node))


def _is_dict_call(node: ast.AST) -> bool:
    return isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "dict"


def _type_name(call: ast.Call) -> str | None:
    for kw in call.keywords:
        if kw.arg == "type":
            return ast.unparse(kw.value)
    return None


class ConfigSource:
    """A config's text plus edits addressed through its syntax tree."""

    def __init__(self, text: str, name: str = "<config>"):
        self.name = name
        self._text = text
        self._tree: ast.Module | None = None
        self._line_starts: list[int] | None = None
        self.tree  # noqa: B018 - fail early on a file that does not parse

    # -- text and positions ------------------------------------------------------------
    @property
    def text(self) -> str:
        return self._text

    @property
    def tree(self) -> ast.Module:
        if self._tree is None:
            try:
                self._tree = ast.parse(self._text)
            except SyntaxError as exc:
                raise WizardError(
                    f"not valid Python: {exc.msg}",
                    where=f"{self.name}:{exc.lineno}",
                    fix="correct the line, or write the config again from the wizard",
                ) from exc
        return self._tree

    def _set_text(self, text: str) -> None:
        self._text = text
        self._tree = None
        self._line_starts = None
        self.tree  # noqa: B018 - an edit must leave valid Python

    def _offset(self, lineno: int, col_byte: int) -> int:
        """Character offset of an ast position (ast columns count UTF-8 bytes)."""
        if self._line_starts is None:
            starts = [0]
            for line in self._text.splitlines(keepends=True):
                starts.append(starts[-1] + len(line))
            self._line_starts = starts
        start = self._line_starts[lineno - 1]
        line = self._text[
            start : self._line_starts[lineno] if lineno < len(self._line_starts) else None
        ]
        return start + len(line.encode("utf-8")[:col_byte].decode("utf-8", errors="ignore"))

    def span(self, node: ast.AST) -> tuple[int, int]:
        return (
            self._offset(node.lineno, node.col_offset),  # type: ignore[attr-defined]
            self._offset(node.end_lineno, node.end_col_offset),  # type: ignore[attr-defined]
        )

    def source_of(self, node: ast.AST) -> str:
        start, end = self.span(node)
        return self._text[start:end]

    def _replace(self, start: int, end: int, new: str) -> None:
        self._set_text(self._text[:start] + new + self._text[end:])

    # -- top-level assignments ---------------------------------------------------------
    def assignments(self) -> dict[str, ast.Assign]:
        """Top-level ``name = value`` statements (the first of each name)."""
        found: dict[str, ast.Assign] = {}
        for stmt in self.tree.body:
            if (
                isinstance(stmt, ast.Assign)
                and len(stmt.targets) == 1
                and isinstance(stmt.targets[0], ast.Name)
            ):
                found.setdefault(stmt.targets[0].id, stmt)
        return found

    def names(self) -> list[str]:
        return list(self.assignments())

    def has(self, name: str) -> bool:
        return name in self.assignments()

    def value_node(self, name: str) -> ast.expr:
        stmt = self.assignments().get(name)
        if stmt is None:
            raise KeyError(name)
        return stmt.value

    def get(self, name: str) -> Any:
        return node_literal(self.value_node(name))

    def set(self, name: str, value: Any, *, after: str | None = None) -> None:
        """Set a top-level assignment's value; a missing one is added after ``after``."""
        stmt = self.assignments().get(name)
        if stmt is not None:
            start, end = self.span(stmt.value)
            self._replace(start, end, py_source(value))
            return
        anchor = self.assignments().get(after) if after else None
        if anchor is None:
            raise KeyError(name)
        pos = (
            self._offset(anchor.end_lineno + 1, 0)
            if anchor.end_lineno < len(self._text.splitlines())
            else len(self._text)
        )
        self._replace(pos, pos, f"{name} = {py_source(value)}\n")

    def insert_line_before(self, name: str, line: str) -> None:
        """Insert a line (a comment) just above the top-level assignment of ``name`` (once)."""
        stmt = self.assignments().get(name)
        if stmt is None:
            raise KeyError(name)
        pos = self._offset(stmt.lineno, 0)
        if self._text[:pos].endswith(line.rstrip("\n") + "\n"):
            return
        self._replace(pos, pos, line.rstrip("\n") + "\n")

    def insert_after_imports(self, line: str) -> None:
        """Insert a statement after the last top-level import (once)."""
        if line in self._text:
            return
        last = None
        for stmt in self.tree.body:
            if isinstance(stmt, (ast.Import, ast.ImportFrom)):
                last = stmt
        lineno = (last.end_lineno if last else 0) + 1
        pos = self._offset(lineno, 0) if lineno <= len(self._text.splitlines()) else len(self._text)
        self._replace(pos, pos, line.rstrip("\n") + "\n")

    def remove_line(self, line: str) -> None:
        self._set_text(self._text.replace(line.rstrip("\n") + "\n", "", 1))

    # -- calls ---------------------------------------------------------------------------
    def call(self, path: Sequence[str]) -> ast.Call:
        """The ``dict(...)`` call at ``path`` (see the module docstring)."""
        if not path:
            raise KeyError("empty path")
        node: ast.AST = self.value_node(path[0])
        for part in path[1:]:
            node = self._step(node, part)
        if not isinstance(node, ast.Call):
            raise KeyError("/".join(path))
        return node

    def _step(self, node: ast.AST, part: str) -> ast.AST:
        if part.startswith("[type=") and part.endswith("]"):
            wanted = part[len("[type=") : -1]
            if isinstance(node, ast.BinOp):  # custom_hooks = [...] + [...]
                node = node.left
            if isinstance(node, (ast.List, ast.Tuple)):
                for elt in node.elts:
                    if _is_dict_call(elt) and _type_name(elt) == wanted:  # type: ignore[arg-type]
                        return elt
            raise KeyError(part)
        if isinstance(node, ast.Call):
            for kw in node.keywords:
                if kw.arg == part:
                    return kw.value
        raise KeyError(part)

    def has_call(self, path: Sequence[str]) -> bool:
        try:
            self.call(path)
        except KeyError:
            return False
        return True

    def keyword(self, path: Sequence[str], key: str) -> ast.keyword | None:
        for kw in self.call(path).keywords:
            if kw.arg == key:
                return kw
        return None

    def get_kw(self, path: Sequence[str], key: str, default: Any = None) -> Any:
        try:
            kw = self.keyword(path, key)
        except KeyError:
            return default
        return default if kw is None else node_literal(kw.value)

    def set_kw(self, path: Sequence[str], key: str, value: Any) -> None:
        """Set ``key=value`` in the call at ``path``; added after the last keyword if absent."""
        call = self.call(path)
        kw = next((k for k in call.keywords if k.arg == key), None)
        if kw is not None:
            start, end = self.span(kw.value)
            self._replace(start, end, py_source(value))
            return
        item = f"{key}={py_source(value)}"
        if not call.keywords and not call.args:
            start, end = self.span(call)
            self._replace(end - 1, end - 1, item)
            return
        last = call.keywords[-1] if call.keywords else call.args[-1]
        _, last_end = self.span(last)
        call_start, _ = self.span(call)
        text = self._text
        exploded = (
            last.lineno != call.lineno
            and text[
                text.rfind("\n", 0, self._offset(last.lineno, last.col_offset)) + 1 : self._offset(
                    last.lineno, last.col_offset
                )
            ].strip()
            == ""
        )
        if exploded:
            line_start = text.rfind("\n", 0, self._offset(last.lineno, last.col_offset)) + 1
            indent = text[line_start : self._offset(last.lineno, last.col_offset)]
            pos = last_end
            rest = text[pos:]
            stripped = rest.lstrip(" ")
            if stripped.startswith(","):
                pos += len(rest) - len(stripped) + 1
                self._replace(pos, pos, f"\n{indent}{item},")
            else:
                self._replace(pos, pos, f",\n{indent}{item}")
        else:
            self._replace(last_end, last_end, f", {item}")

    def remove_kw(self, path: Sequence[str], key: str) -> bool:
        """Remove ``key=...`` from the call at ``path`` (whole lines when it has its own)."""
        try:
            call = self.call(path)
        except KeyError:
            return False
        kw = next((k for k in call.keywords if k.arg == key), None)
        if kw is None:
            return False
        start, end = self.span(kw)
        text = self._text
        after = end
        while after < len(text) and text[after] in " \t":
            after += 1
        trailing_comma = after < len(text) and text[after] == ","
        if trailing_comma:
            after += 1
        line_start = text.rfind("\n", 0, start) + 1
        line_end = text.find("\n", after)
        line_end = len(text) if line_end < 0 else line_end
        if text[line_start:start].strip() == "" and text[after:line_end].strip() == "":
            self._replace(line_start, min(line_end + 1, len(text)), "")
            return True
        if trailing_comma:
            while after < len(text) and text[after] == " ":
                after += 1
            self._replace(start, after, "")
            return True
        before = text.rfind(",", 0, start)
        self._replace(before, end, "")
        return True
