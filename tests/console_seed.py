"""A few cases for the console tests: placed inside the sample grid's areas, one with a photo."""

from __future__ import annotations

import io
import json
import time
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import urlencode

from bot.areas.models import Area
from bot.cases import service
from bot.cases.models import Case
from bot.core_models import UnansweredQuestion
from bot.people.service import ensure_person
from bot.web.auth import sign_init_data

PHOTO_ID = "AgACAgUAAxkBAAIconsolePhotoOfAStreetlight"
PHONE = "13812345678"


@dataclass
class Seeded:
    lamp: int  # 浮山湾 community, captain 1001, a photo, contact not shared
    garbage: int  # 观海 community, captain 1006, contact shared with an address
    road: int  # 湛山 community, overdue
    withdrawn: int


def centre(area: Area) -> tuple[float, float]:
    ring = area.boundary
    lon = sum(p[0] for p in ring[:-1]) / (len(ring) - 1)
    lat = sum(p[1] for p in ring[:-1]) / (len(ring) - 1)
    return lat, lon


def png_bytes(width: int = 320, height: int = 240) -> bytes:
    """A real picture (a lamp post at dusk), so the browser can decode it."""
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (width, height), (40, 52, 90))
    d = ImageDraw.Draw(img)
    d.rectangle([0, height * 3 // 4, width, height], fill=(70, 70, 70))
    d.rectangle([width // 2 - 4, height // 5, width // 2 + 4, height * 3 // 4], fill=(30, 30, 30))
    d.ellipse([width // 2 - 18, height // 5 - 18, width // 2 + 18, height // 5 + 10], fill=(90, 90, 80))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


async def seed(core, now) -> Seeded:
    tz = core.settings.tz
    async with core.sessionmaker() as s, s.begin():
        areas = {a: await s.get(Area, a) for a in ("xianggang-odd", "yanerdao-s", "donghai-w")}
        await ensure_person(session=s, user_id=9001, name="王芳", now=now)
        p = await ensure_person(session=s, user_id=9002, name="刘强", now=now)
        p.username = "liuqiang"

        async def make(cat, area, desc, *, reporter=9001, share=False, address="", photos=(), at=now):
            lat, lon = centre(areas[area])
            c = await service.create(session=s, now=at, tz=tz, reporter_id=reporter, report_chat_id=reporter,
                                     category_id=cat, description=desc, photos=list(photos), address=address,
                                     lat=lat, lon=lon, area_id=area, share_contact=share, language="zh")
            return c

        lamp = await make("streetlight", "xianggang-odd", f"路灯不亮三天了，电话{PHONE}", photos=[PHOTO_ID],
                          address="香港中路12号")
        garbage = await make("garbage", "yanerdao-s", "垃圾桶满了没人清运<script>alert(1)</script>", reporter=9002, share=True,
                             address="燕儿岛路8号")
        road = await make("road", "donghai-w", "人行道砖松了", at=now - timedelta(days=6))
        gone = await make("parking", "donghai-w", "违停", at=now - timedelta(hours=2))
        gone.status = "withdrawn"
        s.add(UnansweredQuestion(at=now, user_id=9001, query="垃圾分类几点收？", normalized="垃圾分类几点收"))
        s.add(UnansweredQuestion(at=now, user_id=9002, query="垃圾分类几点收", normalized="垃圾分类几点收"))
        await s.flush()
        return Seeded(lamp.id, garbage.id, road.id, gone.id)


def init_data(token: str, user_id: int, name: str = "Test", *, auth_date: int | None = None,
              lang: str = "zh-hans") -> str:
    """initData as Telegram builds it for a Mini App opened by this user."""
    fields = {"query_id": "AAHdF6IQAAAAAN0XohDhrOrc", "auth_date": str(auth_date or int(time.time())),
              "user": json.dumps({"id": user_id, "first_name": name, "language_code": lang}, ensure_ascii=False,
                                 separators=(",", ":"))}
    fields["hash"] = sign_init_data(fields, token)
    return urlencode(fields)


async def case_row(core, case_id: int) -> Case:
    async with core.sessionmaker() as s:
        return await s.get(Case, case_id)
