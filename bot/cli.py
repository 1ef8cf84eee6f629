"""The `gridbot` command line: every entry point. Commands that need no Telegram never import a
bot framework: each command imports what it needs inside its function (the one place in gridbot
where that is the rule), so `gridbot --help`, `grid route` and `jobs list` start fast."""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import datetime
from pathlib import Path
import math
from typing import IO, Optional

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="gridbot: grid management on Telegram")
db_app = typer.Typer(no_args_is_help=True, help="database")
grid_app = typer.Typer(no_args_is_help=True, help="the area tree")
faq_app = typer.Typer(no_args_is_help=True, help="the knowledge base")
jobs_app = typer.Typer(no_args_is_help=True, help="scheduled jobs")
export_app = typer.Typer(no_args_is_help=True, help="exports")
app.add_typer(db_app, name="db")
app.add_typer(grid_app, name="grid")
app.add_typer(faq_app, name="faq")
app.add_typer(jobs_app, name="jobs")
app.add_typer(export_app, name="export")


def _settings(**overrides):
    from bot.settings import SettingsError, load_settings

    try:
        return load_settings(**overrides)
    except SettingsError as e:
        typer.echo(f"gridbot: {e}", err=True)
        raise typer.Exit(2)


def _fail(msg: str, code: int = 2):
    typer.echo(f"gridbot: {msg}", err=True)
    raise typer.Exit(code)


@app.command()
def run(webhook: bool = typer.Option(False, "--webhook", help="receive updates by webhook instead of polling"),
        sample_grid: bool = typer.Option(False, "--sample-grid",
                                         help="load the fictional sample grid into an empty database (a trial only)")) -> None:
    """Run the bot with its scheduler (long polling unless --webhook)."""
    settings = _settings()
    if not settings.bot_token:
        _fail("GRIDBOT_BOT_TOKEN is not set (for a local try without Telegram use `gridbot demo`)")
    if webhook and not settings.webhook_url:
        _fail("--webhook needs GRIDBOT_WEBHOOK_URL (the public https address Telegram should call)")
    from bot.runner import run as run_bot
    from bot.startup import StartupError

    try:
        run_bot(settings, webhook=webhook, sample_grid=sample_grid)
    except StartupError as e:
        _fail(str(e), e.code)
    except KeyboardInterrupt:
        raise typer.Exit(130)


@app.command()
def demo(
    db: Path = typer.Option(Path("demo-data/gridbot-demo.db"), help="SQLite file for the demo"),
    script: Optional[Path] = typer.Option(None, help="read the demo input from this file instead of the terminal"),
    fresh: bool = typer.Option(False, help="start from an empty demo database"),
) -> None:
    """A local chat with no Telegram: act as resident, captain, supervisor or admin."""
    from bot.demo import run_demo

    if fresh and db.exists():
        db.unlink()
    source = script.open(encoding="utf-8") if script else sys.stdin
    raise typer.Exit(asyncio.run(run_demo(db, source, interactive=script is None and sys.stdin.isatty())))


@app.command()
def broadcast(
    text: str = typer.Option(..., "--text", help="the notice, plain text: shown exactly as written (<, > and & too)"),
    audience: str = typer.Option("all", "--audience", help="all | residents | workers | groups | area:<id>"),
    photo: Optional[str] = typer.Option(None, "--photo", help="a Telegram file id"),
    author: Optional[int] = typer.Option(None, "--author", help="the admin it is sent for (default: the first)"),
    yes: bool = typer.Option(False, "--yes", help="send; without it only the recipients are counted"),
) -> None:
    """Queue a broadcast notice; the running bot delivers it within the rate limits."""
    raise typer.Exit(broadcast_cli_main(_settings(), text=text, audience=audience, photo=photo, author_id=author,
                                        yes=yes, echo=typer.echo))


@export_app.command("cases")
def export_cases(
    fmt: str = typer.Option("csv", "--format", help="csv | xlsx"),
    out: Optional[Path] = typer.Option(None, "--out", help="file to write (default: stdout for csv, cases-YYYYMMDD-HHMM.xlsx for xlsx)"),
    since: Optional[str] = typer.Option(None, "--since", help="YYYY-MM-DD"),
    area: Optional[str] = typer.Option(None, "--area", help="an area id: its subtree"),
    status: Optional[str] = typer.Option(None, "--status"),
) -> None:
    """Write the cases as CSV (UTF-8 with BOM, for Excel) or XLSX."""
    raise typer.Exit(export_cli_main(_settings(), fmt=fmt, out=str(out) if out else None, since=since, area=area,
                                     status=status, echo=lambda m: typer.echo(m, err=True)))


def broadcast_cli_main(settings, *, text: str, audience: str = "all", photo: str | None = None,
                       author_id: int | None = None, yes: bool = False, echo=print) -> int:
    """`gridbot broadcast --audience all|residents|workers|groups|area:<id> --text … [--photo FILE_ID] [--yes]`

    Queues a broadcast from the shell (the running bot delivers it); without --yes it only
    prints how many would get it. Progress goes to the author (default: the first admin id).
    Returns the exit code.
    """
    from bot.areas.models import Area
    from bot.broadcasts import service
    from bot.broadcasts.flows import launch
    from bot.clock import utcnow
    from bot.db import make_engine, make_sessionmaker
    from bot.i18n import Texts
    from bot.notify import language_of
    from bot.people.models import AuditEntry, Person

    if audience not in service.AUDIENCES and not audience.startswith("area:"):
        echo(f"gridbot: unknown audience {audience!r} (all, residents, workers, groups, area:<id>)")
        return 2
    text = (text or "").strip()
    if not text or len(text) > service.MAX_TEXT:
        echo(f"gridbot: the text must have 1 to {service.MAX_TEXT} characters")
        return 2
    author = author_id if author_id is not None else (settings.admin_ids[0] if settings.admin_ids else 0)

    async def go() -> int:
        engine = make_engine(settings.database_url)
        try:
            async with make_sessionmaker(engine)() as s, s.begin():
                now = utcnow()
                if audience.startswith("area:"):
                    area = await s.get(Area, audience[5:])
                    if area is None or area.retired:
                        echo(f"gridbot: no area {audience[5:]!r} in the grid (the ids are in `gridbot grid show`)")
                        return 2
                n = await service.count(session=s, audience=audience)
                if not yes:
                    echo(f"{n} recipients; add --yes to send")
                    return 0
                if n == 0:
                    echo("nobody to send to")
                    return 1
                t = Texts(language_of(await s.get(Person, author))) if author else Texts("zh")
                bc = await service.create_draft(session=s, author_id=author, text=text, photo=photo,
                                                audience=audience, total=n, now=now)
                bc = await service.start(session=s, broadcast_id=bc.id, author_id=author,
                                         chat_id=author if author else None, now=now)
                sent_to = await launch(session=s, now=now, bc=bc, admin_chat_id=author or None, t=t)
                s.add(AuditEntry(at=now, actor_id=author or None, action="broadcast",
                                 detail=f"#{bc.id} {audience} {sent_to} (command line)"))
                echo(f"broadcast #{bc.id} queued for {sent_to} recipients")
                return 0
        finally:
            await engine.dispose()

    return asyncio.run(go())


def export_cli_main(settings, *, fmt: str = "csv", out: str | None = None, since: str | None = None,
                    area: str | None = None, status: str | None = None, lang: str = "zh", echo=print) -> int:
    """`gridbot export cases --format csv|xlsx [--out FILE] [--since DATE] [--area ID] [--status S]`

    Writes to FILE (default: stdout for CSV, cases-YYYYMMDD-HHMM.xlsx for XLSX). --since is YYYY-MM-DD in the
    configured time zone; --area includes the area's whole subtree. Returns the exit code.
    """
    from bot.areas.service import load_tree
    from bot.clock import utcnow
    from bot.db import make_engine, make_sessionmaker
    from bot.export import FORMATS, STATUSES, Filters, export
    from bot.i18n import Texts

    if fmt not in FORMATS:
        echo(f"gridbot: --format must be csv or xlsx, not {fmt!r}")
        return 2
    if fmt == "xlsx" and not out:
        # a spreadsheet is not for a terminal: a file named after the moment
        out = f"cases-{utcnow().astimezone(settings.tz):%Y%m%d-%H%M}.xlsx"
    if status and status not in STATUSES:
        echo(f"gridbot: --status must be one of {', '.join(STATUSES)}, not {status!r}")
        return 2
    start = None
    if since:
        try:
            start = datetime.strptime(since, "%Y-%m-%d").replace(tzinfo=settings.tz)
        except ValueError:
            echo(f"gridbot: --since must be YYYY-MM-DD, not {since!r}")
            return 2

    async def go() -> int:
        engine = make_engine(settings.database_url)
        try:
            async with make_sessionmaker(engine)() as s:
                area_ids = None
                if area:
                    area_ids = tuple((await load_tree(session=s, include_retired=False)).subtree(area))
                    if not area_ids:
                        echo(f"gridbot: no area {area!r}")
                        return 2
                filters = Filters(since=start, area_ids=area_ids, status=status)
                t = Texts(lang)
                if out:
                    with open(out, "wb") as f:
                        n = await export(session=s, filters=filters, fmt=fmt, now=utcnow(), tz=settings.tz, t=t,
                                         out=f)
                    echo(f"{n} cases written to {out}")
                else:
                    n = await export(session=s, filters=filters, fmt=fmt, now=utcnow(), tz=settings.tz, t=t,
                                     out=sys.stdout.buffer)
                    sys.stdout.buffer.flush()
                return 0
        finally:
            await engine.dispose()

    return asyncio.run(go())


async def run_job_now(settings, name: str) -> dict:
    """`gridbot jobs run NAME`: a core without a transport on the configured database."""
    from bot.app import Core
    from bot.runner import prepare_database
    from scheduler.registry import run_job

    engine = await prepare_database(settings, sample_grid=None)
    core = Core(settings, engine=engine)
    try:
        return await run_job(core, name)
    finally:
        await engine.dispose()


# --- gridbot grid route: the routing contract on the command line (SPEC.md) ----------------


def _dump(obj: dict) -> str:
    return json.dumps(obj, ensure_ascii=False)


def _num(v, what: str) -> float:
    if isinstance(v, bool) or v is None:
        raise ValueError(f"{what} must be a number")
    if isinstance(v, str):
        v = v.strip()
    x = float(v)
    if not math.isfinite(x):
        raise ValueError(f"{what} must be a finite number")
    return x


def _route_line(router, line: str) -> dict:
    try:
        obj = json.loads(line)
    except ValueError as exc:
        raise ValueError(f"invalid JSON: {exc.msg if hasattr(exc, 'msg') else exc}") from None
    if not isinstance(obj, dict):
        raise ValueError('expected a JSON object {"address": …} or {"lat": …, "lon": …}')
    address = obj.get("address")
    if address is not None and not isinstance(address, str):
        raise ValueError("address must be a string")
    has_lat, has_lon = obj.get("lat") is not None, obj.get("lon") is not None
    if has_lat != has_lon:
        raise ValueError("lat and lon must be given together")
    if not address and not has_lat:
        raise ValueError('expected "address" or "lat" and "lon"')
    lat = _num(obj["lat"], "lat") if has_lat else None
    lon = _num(obj["lon"], "lon") if has_lon else None
    from bot.areas.routing import route_json

    return route_json(router, address=address, lat=lat, lon=lon)


def route_cli_main(address: str | None, lat: float | None, lon: float | None,
                   grid_path: str | Path | None, stdin: IO[str], stdout: IO[str], *,
                   router=None) -> int:
    """``gridbot grid route [--address TEXT] [--lat X --lon Y] [--grid FILE] --json``.

    Prints one JSON object per query.  Exit status: 0 ok, 1 when some stdin lines were
    malformed (each gets ``{"line": n, "error": …}`` and the rest are still routed),
    2 for a usage error or an invalid grid file (``{"error": …}``).  ``router`` (the grid in
    the database) is used instead of ``grid_path`` when given."""
    from bot.areas.grid_file import GridFileError
    from bot.areas.routing import get_router, route_json

    if (lat is None) != (lon is None):
        stdout.write(_dump({"error": "--lat and --lon must be given together"}) + "\n")
        return 2
    try:
        if router is None:
            router = get_router(grid_path)
    except GridFileError as exc:
        stdout.write(_dump({"error": str(exc)}) + "\n")
        return 2
    if address is not None or lat is not None:
        try:
            la = _num(lat, "lat") if lat is not None else None
            lo = _num(lon, "lon") if lon is not None else None
        except (TypeError, ValueError) as exc:
            stdout.write(_dump({"error": str(exc)}) + "\n")
            return 2
        stdout.write(_dump(route_json(router, address=address, lat=la, lon=lo)) + "\n")
        stdout.flush()
        return 0
    status = 0
    for n, line in enumerate(stdin, 1):
        if not line.strip():
            continue
        try:
            out = _route_line(router, line)
        except (ValueError, TypeError) as exc:
            out = {"line": n, "error": str(exc)}
            status = 1
        stdout.write(_dump(out) + "\n")
        stdout.flush()
    return status


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply database migrations."""
    settings = _settings()

    async def go() -> str | None:
        from bot.db import current_revision, ensure_sqlite_dir, make_engine, upgrade

        ensure_sqlite_dir(settings.database_url)
        engine = make_engine(settings.database_url)
        try:
            await upgrade(engine)
            return await current_revision(engine)
        finally:
            await engine.dispose()

    rev = asyncio.run(go())
    typer.echo(f"database at revision {rev}")


@grid_app.command("import")
def grid_import(file: Path,
                dry_run: bool = typer.Option(False, "--dry-run", help="show what would change; write nothing")) -> None:
    """Load the area tree from a YAML or GeoJSON file (updates in place; keeps cases)."""
    from bot.areas.grid_file import GridFileError, load_grid

    settings = _settings()
    try:
        spec = load_grid(file)
    except GridFileError as e:
        _fail(str(e))
    except OSError as e:
        _fail(f"cannot read {file}: {e.strerror}")
    if dry_run:
        for line in asyncio.run(_grid_changes(settings, spec)):
            typer.echo(line)
        return

    async def go():
        from bot.db import ensure_sqlite_dir, make_engine, upgrade
        from bot.runner import import_grid_file

        ensure_sqlite_dir(settings.database_url)
        engine = make_engine(settings.database_url)
        try:
            await upgrade(engine)
            return await import_grid_file(settings, engine, file)
        finally:
            await engine.dispose()

    r = asyncio.run(go())
    typer.echo(f"imported {file}: {r.areas_added} areas added, {r.areas_updated} updated, "
               f"{r.areas_retired} retired, {r.categories} categories")


async def _grid_changes(settings, spec) -> list[str]:
    """What `grid import` would do to the database's grid, one line per area, and a total."""
    from bot.areas.service import load_spec
    from bot.db import make_engine, make_sessionmaker, upgrade

    engine = make_engine(settings.database_url)
    try:
        await upgrade(engine)
        async with make_sessionmaker(engine)() as s:
            old = {a.id: a for a in (await load_spec(session=s)).areas}
    finally:
        await engine.dispose()
    new = {a.id: a for a in spec.areas}
    lines, changed = [], 0
    for a in spec.areas:
        if a.id not in old:
            lines.append(f"+ {a.id}  {a.name}" + (f"  (under {a.parent_id})" if a.parent_id else ""))
            continue
        o, diffs = old[a.id], []
        for label, field in (("name", "name"), ("parent", "parent_id"), ("captain", "captain"),
                             ("supervisor", "supervisor"), ("aliases", "aliases"), ("boundary", "boundary")):
            before, after = getattr(o, field), getattr(a, field)
            if field == "aliases":
                before, after = tuple(before or ()), tuple(after or ())
            if before != after:
                diffs.append(f"{label} changed" if field == "boundary" else f"{label} {before or '—'} → {after or '—'}")
        if diffs:
            changed += 1
            lines.append(f"~ {a.id}  {a.name}: " + "; ".join(diffs))
    retired = [o for i, o in old.items() if i not in new]
    lines += [f"- {o.id}  {o.name}  (retired: kept for its cases, no longer routed to)" for o in retired]
    added = sum(1 for i in new if i not in old)
    lines.append(f"dry run: {added} areas would be added, {changed} changed, {len(retired)} retired, "
                 f"{len(new) - added - changed} unchanged; nothing was written")
    return lines


@grid_app.command("show")
def grid_show() -> None:
    """Print the area tree with captains and supervisors."""
    settings = _settings()

    async def go():
        from bot.areas.service import load_spec
        from bot.db import make_engine, make_sessionmaker, upgrade
        from bot.people.models import Person
        from sqlalchemy import select

        engine = make_engine(settings.database_url)
        try:
            await upgrade(engine)
            async with make_sessionmaker(engine)() as s:
                spec = await load_spec(session=s)
                names = dict((await s.execute(select(Person.id, Person.name))).all())
            return spec, names
        finally:
            await engine.dispose()

    spec, names = asyncio.run(go())
    if not spec.areas:
        typer.echo("the grid is empty: gridbot grid import FILE")
        return
    from bot.areas.routing import Router

    home = Router(spec).home
    if spec.region:
        typer.echo(f"region: {spec.region} (from the grid file)")
    elif home.codes:
        typer.echo(f"region: {home.label} (inferred from the {home.how})")
    else:
        typer.echo("region: unknown (set `region:` in the grid file to tell outside addresses apart)")
    from bot.areas.tree import AreaTree

    tree = AreaTree.of_spec(spec.areas)
    by_id = {a.id: a for a in spec.areas}
    for area_id in tree.subtree(None):  # each area under its own parent, indented by its depth
        a, depth = by_id[area_id], len(tree.ancestors(area_id))
        who = []
        if a.supervisor:
            who.append(f"supervisor {names.get(a.supervisor) or a.supervisor} ({a.supervisor})")
        if a.captain:
            who.append(f"captain {names.get(a.captain) or a.captain} ({a.captain})")
        typer.echo(f"{'  ' * depth}{a.id}  {a.name}" + (f"  — {', '.join(who)}" if who else ""))
    typer.echo(f"{len(spec.areas)} areas, {len(spec.categories)} categories")


@grid_app.command("route")
def grid_route(
    address: Optional[str] = typer.Option(None, "--address"),
    lat: Optional[float] = typer.Option(None, "--lat"),
    lon: Optional[float] = typer.Option(None, "--lon"),
    grid: Optional[Path] = typer.Option(None, "--grid", help="grid file (default: the grid in the database; "
                                                           "when that is empty, GRIDBOT_GRID_FILE or the sample)"),
    as_json: bool = typer.Option(True, "--json/--no-json", help="print JSON (the only format)"),
) -> None:
    """Which area and assignee a place goes to: {"area_id", "assignee", "score"}."""
    if (lat is None) != (lon is None):
        _fail("--lat and --lon go together")
    router = None
    if grid is None:
        settings = _settings()
        router = _router_from_database(settings.database_url)
        if router is None:
            grid = settings.grid_path
    raise typer.Exit(route_cli_main(address, lat, lon, str(grid) if grid else None, sys.stdin, sys.stdout,
                                    router=router))


def _router_from_database(url: str):
    """A Router over the grid imported into the database; None when there is none yet (an
    SQLite file that does not exist is not created)."""
    from sqlalchemy.engine import make_url

    u = make_url(url)
    if u.get_backend_name() == "sqlite" and u.database and u.database != ":memory:" and not Path(u.database).exists():
        return None

    async def go():
        from bot.areas.service import load_spec
        from bot.db import make_engine, make_sessionmaker

        engine = make_engine(url)
        try:
            async with make_sessionmaker(engine)() as s:
                return await load_spec(session=s)
        finally:
            await engine.dispose()

    try:
        spec = asyncio.run(go())
    except Exception:  # no schema yet, database unreachable: fall back to the grid file
        return None
    if not spec.areas:
        return None
    from bot.areas.routing import Router

    return Router(spec)


@faq_app.command("match")
def faq_match(
    queries: Optional[list[str]] = typer.Argument(None),
    kb: Optional[Path] = typer.Option(None, "--kb", help="a knowledge file or folder"),
    as_json: bool = typer.Option(True, "--json/--no-json", help="print JSON lines (the only format)"),
) -> None:
    """Match questions against the knowledge base; one JSON object per query."""
    from knowledge.cli import faq_match_main

    if kb is None:
        kb = _settings().kb_path
    raise typer.Exit(faq_match_main(str(kb), list(queries or []), sys.stdin, sys.stdout))


@faq_app.command("export")
def faq_export(
    dest: Path = typer.Argument(..., help="folder to write the knowledge files to"),
    kb: Optional[Path] = typer.Option(None, "--kb", help="the knowledge file or folder to start from"),
) -> None:
    """Write the knowledge base with the wordings admins linked in the bot (kept in the database)
    added as alternates, one YAML file per knowledge file."""
    from knowledge.learned import export_kb
    from knowledge.loader import KnowledgeError

    settings = _settings()
    kb = kb or settings.kb_path

    async def linked() -> dict[str, list[str]]:
        from sqlalchemy import select
        from sqlalchemy.exc import SQLAlchemyError

        from bot.core_models import FaqAlternate
        from bot.db import make_engine, make_sessionmaker

        engine = make_engine(settings.database_url)
        try:
            async with make_sessionmaker(engine)() as s:
                out: dict[str, list[str]] = {}
                for entry_id, text in (await s.execute(
                        select(FaqAlternate.entry_id, FaqAlternate.text).order_by(FaqAlternate.id))).all():
                    out.setdefault(entry_id, []).append(text)
                return out
        except SQLAlchemyError:
            return {}
        finally:
            await engine.dispose()

    try:
        added = export_kb(kb, dest, asyncio.run(linked()))
    except KnowledgeError as e:
        typer.echo(f"gridbot faq export: invalid knowledge base: {e}", err=True)
        raise typer.Exit(2)
    typer.echo(f"wrote {len(added)} knowledge files to {dest} ({sum(added.values())} linked wordings added)")


@jobs_app.command("list")
def jobs_list() -> None:
    """The scheduled jobs and when each runs next."""
    from scheduler.registry import describe_jobs

    settings = _settings()
    for line in describe_jobs(settings):
        typer.echo(line)


@jobs_app.command("run")
def jobs_run(name: str) -> None:
    """Run one job now (it still takes its lease and sends nothing twice)."""
    from scheduler.registry import JOBS

    if name not in JOBS:
        _fail(f"no job {name!r}; jobs: {', '.join(JOBS)}")
    from bot.startup import StartupError

    settings = _settings()
    try:
        result = asyncio.run(run_job_now(settings, name))
    except StartupError as e:
        _fail(str(e), e.code)
    typer.echo(json.dumps(result, ensure_ascii=False))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
