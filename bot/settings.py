"""Settings from GRIDBOT_* environment variables and a .env file (SPEC.md, "External contracts")."""

from __future__ import annotations

import re
from datetime import time
from functools import lru_cache
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from typing_extensions import Annotated

PACKAGE_DIR = Path(__file__).resolve().parent
SAMPLE_GRID = PACKAGE_DIR / "areas" / "sample_grid.yaml"
DEFAULT_KB_DIR = PACKAGE_DIR.parent / "knowledge" / "data"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GRIDBOT_", env_file=".env", env_file_encoding="utf-8", extra="ignore")

    bot_token: str = ""
    telegram_api_base: str = "https://api.telegram.org"
    database_url: str = "sqlite+aiosqlite:///gridbot.db"
    framework: str = "aiogram"
    admin_ids: Annotated[tuple[int, ...], NoDecode] = ()
    grid_file: Path | None = None
    knowledge_dir: Path | None = None
    timezone: str = "Asia/Shanghai"
    digest_time: str = "08:30"
    webhook_url: str = ""
    webhook_secret: str = ""
    webhook_host: str = "0.0.0.0"
    webhook_port: int = 8080
    webhook_path: str = "/telegram/webhook"
    # concurrency: at most this many chats handled at once by one process
    max_concurrent_chats: int = Field(default=32, ge=1, le=1024)
    outbox_workers: int = Field(default=8, ge=1, le=256)
    # messages per second for the bot as a whole; Telegram allows about 30 (more for paid broadcasts)
    broadcast_rate: float = Field(default=25.0, gt=0, le=1000)
    auto_close_days: int = Field(default=7, ge=1, le=90)
    # HTTP or SOCKS5 proxy for reaching Telegram (both frameworks), e.g. socks5://127.0.0.1:1080
    proxy: str = ""
    log_level: str = "INFO"
    log_format: str = "text"
    # the web console (bot/web): in webhook mode served by the webhook server; in polling mode on
    # web_host:web_port (0 = no console). web_base_url is the public address put in /console links.
    web_host: str = "127.0.0.1"
    web_port: int = Field(default=0, ge=0, le=65535)
    web_base_url: str = ""
    # map tiles for the console map, e.g. https://tile.example.org/{z}/{x}/{y}.png ("" = no tiles)
    tile_url: str = ""

    @field_validator("admin_ids", mode="before")
    @classmethod
    def _split_ids(cls, v):
        if v is None or v == "":
            return ()
        if isinstance(v, (list, tuple)):
            return tuple(int(x) for x in v)
        if isinstance(v, int):
            return (v,)
        parts = [p for p in re.split(r"[,\s]+", str(v)) if p]
        for p in parts:
            if not re.fullmatch(r"-?\d+", p):
                raise ValueError(f"not a Telegram user id: {p!r}")
        return tuple(int(p) for p in parts)

    @field_validator("framework")
    @classmethod
    def _framework(cls, v: str) -> str:
        v = v.strip().lower()
        if v not in ("aiogram", "ptb"):
            raise ValueError("must be 'aiogram' or 'ptb'")
        return v

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {v!r}") from None
        return v

    @field_validator("digest_time")
    @classmethod
    def _hhmm(cls, v: str) -> str:
        m = re.fullmatch(r"(\d{1,2}):(\d{2})", v.strip())
        if not m or int(m[1]) > 23 or int(m[2]) > 59:
            raise ValueError("must be HH:MM, e.g. 08:30")
        return f"{int(m[1]):02d}:{m[2]}"

    @field_validator("telegram_api_base")
    @classmethod
    def _base(cls, v: str) -> str:
        v = v.strip().rstrip("/")
        if not re.match(r"https?://", v):
            raise ValueError("must start with http:// or https://")
        return v

    @field_validator("database_url")
    @classmethod
    def _db_url(cls, v: str) -> str:
        return normalize_database_url(v)

    @field_validator("bot_token")
    @classmethod
    def _token(cls, v: str) -> str:
        v = v.strip()
        if v and not re.fullmatch(r"\d+:[\w-]+", v):
            raise ValueError("not a bot token (the form is 123456789:AAH… as @BotFather gives it)")
        return v

    @field_validator("proxy")
    @classmethod
    def _proxy(cls, v: str) -> str:
        v = v.strip()
        if v and not re.match(r"(https?|socks5h?|socks4a?)://[^/\s]+", v):
            raise ValueError("must be http://host:port or socks5://[user:pass@]host:port")
        return v

    @field_validator("log_level")
    @classmethod
    def _level(cls, v: str) -> str:
        v = v.strip().upper()
        if v == "WARN":
            v = "WARNING"
        if v not in LOG_LEVELS:
            raise ValueError(f"must be one of {', '.join(LOG_LEVELS)}")
        return v

    @field_validator("log_format")
    @classmethod
    def _format(cls, v: str) -> str:
        v = v.strip().lower()
        if v not in ("text", "json"):
            raise ValueError("must be 'text' or 'json'")
        return v

    @field_validator("webhook_url")
    @classmethod
    def _webhook_url(cls, v: str) -> str:
        v = v.strip()
        if v and not v.startswith("https://"):
            raise ValueError("must be a public https:// address (Telegram calls webhooks over TLS only)")
        m = re.match(r"https://(?:\[[^\]]+\]|[^/:]+)(?::(\d+))?", v)
        if v and m and m[1] and int(m[1]) not in (443, 80, 88, 8443):
            raise ValueError(f"port {m[1]}: Telegram calls webhooks on ports 443, 80, 88 or 8443 only")
        return v

    @field_validator("webhook_path")
    @classmethod
    def _webhook_path(cls, v: str) -> str:
        v = v.strip()
        if not v.startswith("/"):
            raise ValueError("must start with /, e.g. /telegram/webhook")
        return v

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def digest_at(self) -> time:
        h, m = self.digest_time.split(":")
        return time(int(h), int(m))

    @property
    def grid_path(self) -> Path:
        return self.grid_file or SAMPLE_GRID

    @property
    def kb_path(self) -> Path:
        return self.knowledge_dir or DEFAULT_KB_DIR


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
DATABASE_URL_FORMS = "sqlite+aiosqlite:///path/to/gridbot.db or postgresql+asyncpg://user:password@host:5432/dbname"


def normalize_database_url(v: str) -> str:
    """The async URL SQLAlchemy needs: `sqlite:///` and `postgresql://` get their async drivers;
    anything else is refused with the forms that work."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    v = v.strip()
    try:
        url = make_url(v)
    except ArgumentError:
        raise ValueError(f"not a database URL {v!r}; expected {DATABASE_URL_FORMS}") from None
    backend, _, driver = url.drivername.partition("+")
    if backend == "sqlite" and driver in ("", "aiosqlite", "pysqlite"):
        if not url.database:
            raise ValueError(f"no file in {v!r}; expected {DATABASE_URL_FORMS}")
        driver_name = "sqlite+aiosqlite"
    elif backend in ("postgresql", "postgres") and driver in ("", "asyncpg", "psycopg2", "psycopg"):
        if not url.database:
            raise ValueError(f"no database name in {v!r}; expected {DATABASE_URL_FORMS}")
        driver_name = "postgresql+asyncpg"
    else:
        raise ValueError(f"unsupported database {url.drivername!r}; expected {DATABASE_URL_FORMS}")
    # only the scheme changes: the rest is kept as written (paths, %-escapes, query options)
    return driver_name + v[v.index("://"):]


class SettingsError(Exception):
    pass


def load_settings(**overrides) -> Settings:
    """Settings, or SettingsError with one line naming each bad variable."""
    try:
        return Settings(**overrides)
    except ValidationError as e:
        parts = []
        for err in e.errors():
            name = "GRIDBOT_" + str(err["loc"][0]).upper() if err["loc"] else "settings"
            msg = err["msg"].removeprefix("Value error, ")
            parts.append(f"{name}: {msg}")
        raise SettingsError("invalid settings: " + "; ".join(parts)) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()
