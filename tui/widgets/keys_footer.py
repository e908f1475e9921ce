"""Textual's Footer, drawn in the first frame and redrawn only when the keys it shows change."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.screen import Screen
from textual.widgets import Footer


class KeysFooter(Footer):
    """The keys of the focused widget and its ancestors, as Footer shows them.

    Textual's Footer starts empty, fills itself after the first frame, then recomposes on every
    change of focus or bindings even when the keys shown stay the same (three times at start-up,
    ~0.45 KB each over a slow link). This one composes its keys at once and recomposes only when
    the list of keys it would show differs from the one on screen.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.set_reactive(Footer._bindings_ready, True)
        self._shown: tuple | None = None

    def _keys(self) -> tuple:
        palette = self.app.COMMAND_PALETTE_BINDING if self.show_command_palette else None
        return tuple(
            (binding.key, binding.description, binding.action, enabled, tooltip)
            for key, (_node, binding, enabled, tooltip) in self.screen.active_bindings.items()
            if binding.show or key == palette
        )

    def compose(self) -> ComposeResult:
        self._shown = self._keys()
        yield from super().compose()

    def bindings_changed(self, screen: Screen) -> None:
        if screen.app.app_focus and self.is_attached and screen is self.screen:
            self.call_after_refresh(self._recompose_if_changed)

    async def _recompose_if_changed(self) -> None:
        if self.is_attached and self._keys() != self._shown:
            await self.recompose()
