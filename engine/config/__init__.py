"""The Config step: render xtuner's built-in config with the tutorial's edits and a profile.

Public API (cheap to import: no torch/xtuner):
    render_config(...) -> RenderedConfig, write_config(ws, rendered, ...), diff_text(rendered)
    list_builtin(pattern), builtin_path(name), PROFILES, detect_hardware()
"""

from engine.config.api import (
    TUTORIAL_EVAL_INPUTS,
    RenderedConfig,
    estimate_for,
    render_config,
    settings_of_text,
    write_config,
)
from engine.config.builtin import TUTORIAL_BASE, builtin_path, list_builtin
from engine.config.diff import diff_text
from engine.config.profiles import PROFILES, Hardware, detect_hardware

__all__ = [
    "PROFILES",
    "TUTORIAL_BASE",
    "TUTORIAL_EVAL_INPUTS",
    "Hardware",
    "RenderedConfig",
    "builtin_path",
    "detect_hardware",
    "diff_text",
    "estimate_for",
    "list_builtin",
    "render_config",
    "settings_of_text",
    "write_config",
]
