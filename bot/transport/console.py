"""The local chat of `gridbot demo`: messages go to the terminal, input becomes updates."""

from __future__ import annotations

import html
import itertools
import re

from bot.transport.base import Keyboard
from bot.transport.common import BaseMessenger

_TAG = re.compile(r"</?[a-z][^>]*>")


def plain(text: str) -> str:
    return html.unescape(_TAG.sub("", text))


class ConsoleMessenger(BaseMessenger):
    """Prints what each person would see; remembers buttons so they can be pressed by number."""

    def __init__(self, names: dict[int, str], out=print, files_dir=None) -> None:
        self.names = names
        self.out = out
        self.files_dir = files_dir  # charts and exports are written here, so they can be opened
        self._ids = itertools.count(1)
        self._files = itertools.count(1)
        self.buttons: dict[int, list[tuple[str, str | None, int]]] = {}  # chat → [(label, data, message id)]
        self.log: list[tuple[int, str]] = []

    def _who(self, chat_id: int) -> str:
        return self.names.get(chat_id, str(chat_id))

    def _show(self, chat_id: int, body: str, buttons: Keyboard | None) -> int:
        mid = next(self._ids)
        self.log.append((chat_id, body))
        lines = [f"┌─ to {self._who(chat_id)} (msg {mid})"]
        lines += [f"│ {line}" for line in plain(body).splitlines() or [""]]
        if buttons:
            flat = [b for row in buttons for b in row]
            self.buttons[chat_id] = [(b.text, b.data, mid) for b in flat if b.data]
            labels = []
            n = 0
            for b in flat:
                if b.data:
                    n += 1
                    labels.append(f"[{n}] {b.text}")
                else:
                    labels.append(f"[link] {b.text}")
            lines.append("│ " + "  ".join(labels))
        lines.append("└─")
        self.out("\n".join(lines))
        return mid

    async def send_text(self, chat_id, text, buttons, html_mode) -> int:
        return self._show(chat_id, text, buttons)

    async def send_photo(self, chat_id, photo, caption, buttons) -> int:
        return self._show(chat_id, f"[photo {photo}]\n{caption}", buttons)

    async def send_file(self, chat_id, kind, name, data, caption, buttons) -> int:
        if self.files_dir is None:
            return self._show(chat_id, f"[{kind} {name}, {len(data):,} bytes]\n{caption}", buttons)
        from pathlib import Path

        folder = Path(self.files_dir)
        folder.mkdir(parents=True, exist_ok=True)
        safe = re.sub(r"[^\w.-]+", "_", Path(name).name) or "file"
        path = (folder / f"{next(self._files)}-{safe}").resolve()
        path.write_bytes(data)
        return self._show(chat_id, f"[{kind} {name}, {len(data):,} bytes — open {path}]\n{caption}", buttons)

    async def send_album(self, chat_id, photos, caption) -> int:
        return self._show(chat_id, f"[{len(photos)} photos]", None)

    async def send_location(self, chat_id, lat, lon) -> int:
        return self._show(chat_id, f"[location {lat:.5f}, {lon:.5f}]", None)

    async def edit_text(self, chat_id, message_id, text, buttons) -> None:
        self._show(chat_id, f"(edited msg {message_id})\n{text}", buttons)

    async def edit_caption(self, chat_id, message_id, caption, buttons) -> None:
        self._show(chat_id, f"(edited msg {message_id})\n{caption}", buttons)

    async def answer_callback(self, callback_id, text=None, alert=False) -> None:
        if text:
            self.out(f"  ({'alert' if alert else 'notice'}: {plain(text)})")

    async def set_commands(self, commands) -> None:
        return None
