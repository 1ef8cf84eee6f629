"""What a handler gets: the neutral event, its unit of work, the clock, the catalog."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession

from bot.core_models import Conversation
from bot.i18n import Texts
from bot.notify import Buttons, Render, notify
from bot.outbox.kinds import MessageKind
from bot.outbox.service import enqueue
from bot.people.models import Person
from bot.people.service import roles_of
from bot.transport.base import Incoming, Keyboard, Location, Outgoing

if TYPE_CHECKING:
    from bot.app import Core

# session.info key: the (chat, user) pairs known to have no conversation in this transaction
# (looked up for several updates at once, Core.take): their state needs no query
NO_STATE = "gridbot_no_state"


@dataclass
class Ctx:
    ev: Incoming
    session: AsyncSession
    now: datetime
    core: Core
    person: Person
    t: Texts
    state: Conversation | None = None
    toast: str | None = None
    toast_alert: bool = False
    replies: int = 0
    _roles: Any = field(default=None, repr=False)

    @property
    def settings(self):
        return self.core.settings

    @property
    def lang(self) -> str:
        return self.t.lang

    async def roles(self):
        if self._roles is None:
            self._roles = await roles_of(session=self.session, person=self.person, settings=self.core.settings)
        return self._roles

    # --- replying to this chat ---------------------------------------------------------

    async def reply(self, text: str, buttons: Keyboard | None = None, *, photos: list[str] | None = None,
                    location: Location | None = None, kind: MessageKind = MessageKind.REPLY, chat_id: int | None = None) -> None:
        photos = list(photos or [])
        method = "album" if len(photos) > 1 else "photo" if photos else "location" if location else "send"
        msg = Outgoing(chat_id=chat_id or self.ev.chat.id, method=method, text=text, buttons=buttons,
                       photos=photos, location=location)
        await enqueue(session=self.session, msg=msg, kind=kind, now=self.now)
        self.replies += 1

    async def say(self, key: str, buttons: Keyboard | None = None, **params: Any) -> None:
        await self.reply(self.t(key, **params), buttons)

    async def edit(self, text: str, buttons: Keyboard | None = None) -> None:
        """Replace the text of the message whose button was pressed."""
        if self.ev.message_id is None:
            await self.reply(text, buttons)
            return
        method = "edit_caption" if self.ev.on_media else "edit"
        msg = Outgoing(chat_id=self.ev.chat.id, method=method, text=text, buttons=buttons, message_id=self.ev.message_id)
        await enqueue(session=self.session, msg=msg, kind=MessageKind.EDIT, now=self.now)

    async def notify(self, chat_id: int, kind: MessageKind, render: Render, buttons: Buttons | None = None, **kw: Any) -> bool:
        return await notify(session=self.session, now=self.now, chat_id=chat_id, kind=kind, render=render,
                            buttons=buttons, **kw)

    def answer(self, text: str | None = None, alert: bool = False) -> None:
        """The small notice shown when a button is pressed."""
        self.toast, self.toast_alert = text, alert

    # --- conversation state --------------------------------------------------------------

    async def _stored_state(self) -> Conversation | None:
        key = (self.ev.chat.id, self.ev.user.id)
        if key in self.session.info.get(NO_STATE, ()):
            return None
        return await self.session.get(Conversation, key)

    async def load_state(self) -> Conversation | None:
        self.state = await self._stored_state()
        return self.state

    async def set_state(self, flow: str, step: str, data: dict | None = None) -> None:
        st = self.state or await self._stored_state()
        if st is None:
            self.session.info.get(NO_STATE, set()).discard((self.ev.chat.id, self.ev.user.id))
            st = Conversation(chat_id=self.ev.chat.id, user_id=self.ev.user.id, flow=flow, step=step,
                              data=dict(data or {}), updated_at=self.now)
            self.session.add(st)
        else:
            st.flow, st.step, st.updated_at = flow, step, self.now
            if data is not None:
                st.data = dict(data)  # a new object, so SQLAlchemy sees the change
        self.state = st

    async def clear_state(self) -> None:
        await self.session.execute(delete(Conversation).where(Conversation.chat_id == self.ev.chat.id,
                                                              Conversation.user_id == self.ev.user.id))
        if NO_STATE in self.session.info:
            self.session.info[NO_STATE].add((self.ev.chat.id, self.ev.user.id))
        self.state = None
