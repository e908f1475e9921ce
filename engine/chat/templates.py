"""XTuner prompt templates, read from xtuner's own source and the run's config, never exec'd.

The run's config says ``prompt_template = PROMPT_TEMPLATE.internlm2_chat``; that entry of
``xtuner/utils/templates.py`` gives SYSTEM, INSTRUCTION, SUFFIX, SEP and STOP_WORDS. Both files
are parsed with :mod:`ast` (importing ``xtuner.utils`` costs seconds and a config may run code).

A conversation is laid out as ``xtuner chat`` does it:
bos + SYSTEM(system) + INSTRUCTION(input, round=1) + answer + SUFFIX + SEP + INSTRUCTION(round=2)...
"""

from __future__ import annotations

import ast
import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from engine.errors import WizardError

DEFAULT_TEMPLATE = "internlm2_chat"
MODEL_INFO_FILE = "xtuner_wizard.json"  # written next to a merged model by engine.export

# Used only when xtuner's source cannot be found (the same text as xtuner 0.2.0's entry).
_FALLBACK = {
    "internlm2_chat": {
        "SYSTEM": "<|im_start|>system\n{system}<|im_end|>\n",
        "INSTRUCTION": "<|im_start|>user\n{input}<|im_end|>\n<|im_start|>assistant\n",
        "SUFFIX": "<|im_end|>",
        "SUFFIX_AS_EOS": True,
        "SEP": "\n",
        "STOP_WORDS": ["<|im_end|>"],
    }
}


@dataclass(frozen=True)
class ChatTemplate:
    name: str
    instruction: str
    system: str = ""
    suffix: str = ""
    sep: str = ""
    stop_words: tuple[str, ...] = field(default_factory=tuple)

    @classmethod
    def from_entry(cls, name: str, entry: dict[str, Any]) -> ChatTemplate:
        return cls(
            name=name,
            instruction=entry["INSTRUCTION"],
            system=entry.get("SYSTEM", ""),
            suffix=entry.get("SUFFIX", ""),
            sep=entry.get("SEP", ""),
            stop_words=tuple(entry.get("STOP_WORDS", ())),
        )

    def render(self, messages: list[dict], *, system: str | None = None) -> str:
        """The prompt text for ``messages`` ending with the assistant's turn to speak."""
        text = ""
        if system and self.system:
            text += self.system.format(system=system, round=1, bot_name="")
        n_round = 0
        for msg in messages:
            role, content = msg.get("role"), msg.get("content", "")
            if role == "system":
                if not text and content and self.system:
                    text += self.system.format(system=content, round=1, bot_name="")
            elif role == "user":
                n_round += 1
                text += self.instruction.format(input=content, round=n_round, bot_name="")
            elif role == "assistant":
                text += content + self.suffix + self.sep
        return text

    def encode(
        self, tokenizer: Any, messages: list[dict], *, system: str | None = None
    ) -> list[int]:
        ids = tokenizer.encode(self.render(messages, system=system), add_special_tokens=False)
        bos = getattr(tokenizer, "bos_token_id", None)
        return ([bos] if bos is not None else []) + list(ids)

    def stop_token_ids(self, tokenizer: Any) -> set[int]:
        ids: set[int] = set()
        eos = getattr(tokenizer, "eos_token_id", None)
        if eos is not None:
            ids.add(int(eos))
        for word in (*self.stop_words, self.suffix):
            if not word:
                continue
            tok = tokenizer.convert_tokens_to_ids(word)
            unk = getattr(tokenizer, "unk_token_id", None)
            if isinstance(tok, int) and tok != unk:
                ids.add(tok)
        return ids


def _literal(node: ast.AST) -> Any:
    """literal_eval that also accepts dict(KEY=...) calls (xtuner writes its templates so)."""
    if isinstance(node, ast.Call) and getattr(node.func, "id", None) in ("dict", "ConfigDict"):
        return {kw.arg: _literal(kw.value) for kw in node.keywords if kw.arg}
    return ast.literal_eval(node)


@lru_cache(maxsize=4)
def _xtuner_templates(path: str | None) -> dict[str, dict[str, dict[str, Any]]]:
    """{"PROMPT_TEMPLATE": {...}, "SYSTEM_TEMPLATE": {...}} from xtuner/utils/templates.py."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    if path is None:
        return out
    tree = ast.parse(Path(path).read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target = getattr(node.targets[0], "id", None)
            if target in ("PROMPT_TEMPLATE", "SYSTEM_TEMPLATE"):
                try:
                    out[target] = _literal(node.value)
                except ValueError:
                    continue
    return out


def xtuner_templates() -> dict[str, dict[str, Any]]:
    from engine.xtuner_env import xtuner_package_dir

    pkg = xtuner_package_dir()
    path = pkg / "utils" / "templates.py" if pkg else None
    found = _xtuner_templates(str(path) if path and path.is_file() else None)
    return found or {"PROMPT_TEMPLATE": _FALLBACK, "SYSTEM_TEMPLATE": {}}


def template_names() -> list[str]:
    return sorted(xtuner_templates().get("PROMPT_TEMPLATE", {}))


def get_template(name: str) -> ChatTemplate:
    table = xtuner_templates().get("PROMPT_TEMPLATE", {})
    if name not in table:
        raise WizardError(
            f"unknown prompt template {name!r}",
            fix=f"use one of xtuner's: {', '.join(sorted(table)[:8])}, ...",
        )
    return ChatTemplate.from_entry(name, table[name])


def config_settings(config_path: str | Path) -> dict[str, Any]:
    """Top-level settings of an xtuner config read through its syntax: prompt template name,
    SYSTEM (resolved when it is a SYSTEM_TEMPLATE entry), pretrained_model_name_or_path."""
    path = Path(config_path)
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except (OSError, SyntaxError) as exc:
        raise WizardError(f"cannot read the config: {exc}", where=str(path)) from exc
    out: dict[str, Any] = {}
    for node in tree.body:
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1):
            continue
        target = getattr(node.targets[0], "id", None)
        value = node.value
        if target == "prompt_template":
            if isinstance(value, ast.Attribute):
                out["prompt_template"] = value.attr
            elif isinstance(value, ast.Subscript) and isinstance(value.slice, ast.Constant):
                out["prompt_template"] = value.slice.value
        elif target == "SYSTEM":
            if (
                isinstance(value, ast.Attribute)
                and getattr(value.value, "id", "") == "SYSTEM_TEMPLATE"
            ):
                out["SYSTEM"] = xtuner_templates().get("SYSTEM_TEMPLATE", {}).get(value.attr, "")
            else:
                try:
                    out["SYSTEM"] = ast.literal_eval(value)
                except ValueError:
                    pass
        elif target == "pretrained_model_name_or_path":
            try:
                out["pretrained_model_name_or_path"] = ast.literal_eval(value)
            except ValueError:
                pass
    return out


def template_from_config(config_path: str | Path) -> ChatTemplate:
    name = config_settings(config_path).get("prompt_template")
    if not name:
        raise WizardError(
            "has no `prompt_template = PROMPT_TEMPLATE.<name>` line",
            where=str(config_path),
            fix="add the line, or pass the template name",
        )
    return get_template(name)


def model_info(model_path: str | Path) -> dict[str, Any]:
    try:
        return json.loads((Path(model_path) / MODEL_INFO_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def resolve_template(template: Any, *, model_path: str | Path | None = None) -> ChatTemplate:
    """A ChatTemplate from a ChatTemplate, a name, a config path, or the model's info file."""
    if isinstance(template, ChatTemplate):
        return template
    if isinstance(template, (str, Path)) and str(template).endswith(".py"):
        return template_from_config(template)
    if isinstance(template, str) and template:
        return get_template(template)
    if model_path is not None:
        info = model_info(model_path)
        if info.get("prompt_template"):
            return get_template(info["prompt_template"])
        family = family_template(model_path)
        if family:
            return get_template(family)
    return get_template(DEFAULT_TEMPLATE)


def family_template(model_path: str | Path) -> str | None:
    """The prompt template of the built-in config proposed for a base model's family
    (``qwen2`` -> ``qwen_chat``), read from that config's source; None when unknown."""
    from engine.config.api import proposed_base_for
    from engine.config.builtin import builtin_path

    try:
        settings = config_settings(builtin_path(proposed_base_for(model_path)))
    except (WizardError, OSError, ValueError, SyntaxError):
        return None
    name = settings.get("prompt_template")
    return name if isinstance(name, str) else None
