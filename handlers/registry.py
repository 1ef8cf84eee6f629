"""Which handler gets an update: commands, button prefixes, flow steps, free text.

Handlers are plain `async def h(ctx) -> None`; they register by decorator here, so the
dispatch table is data and a typo in a name fails at import, not at the first user.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

Handler = Callable[..., Awaitable[None]]


@dataclass(frozen=True)
class CommandSpec:
    name: str
    handler: Handler
    private_only: bool
    menu: str | None  # catalog key of the menu description, None = not in the menu
    roles: tuple[str, ...]  # who sees it in /help ('' = everyone)


COMMANDS: dict[str, CommandSpec] = {}
CALLBACKS: dict[str, Handler] = {}
FLOWS: dict[str, Handler] = {}


def command(*names: str, private_only: bool = False, menu: str | None = None, roles: tuple[str, ...] = ("",)):
    def deco(fn: Handler) -> Handler:
        for n in names:
            if n in COMMANDS:
                raise ValueError(f"command /{n} registered twice")
            COMMANDS[n] = CommandSpec(n, fn, private_only, menu if n == names[0] else None, roles)
        return fn

    return deco


def callback(prefix: str):
    """Button data is '<prefix>:<rest>'; prefixes are short to fit Telegram's 64 bytes."""

    def deco(fn: Handler) -> Handler:
        if prefix in CALLBACKS or ":" in prefix:
            raise ValueError(f"bad or duplicate callback prefix {prefix!r}")
        CALLBACKS[prefix] = fn
        return fn

    return deco


def flow(name: str):
    def deco(fn: Handler) -> Handler:
        if name in FLOWS:
            raise ValueError(f"flow {name} registered twice")
        FLOWS[name] = fn
        return fn

    return deco
