"""The scheduled jobs, when they run, and how one is run: under a database lease.

`start_scheduler(core)` is what `gridbot run` starts; `run_job(core, name)` runs one job now
(the demo's `!job`); `bot.cli.run_job_now(settings, name)` is `gridbot jobs run NAME` (no transport:
messages go to the outbox and the running bot delivers them); `describe_jobs(settings)` is
`gridbot jobs list`. Nothing here imports a Telegram framework.

Every replica runs the scheduler. Each run takes the job's lease, so one replica does the
work at a time; the jobs stay correct without it (dedupe keys, row locks), the lease only
saves the others the work.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from bot.clock import utcnow
from bot.leases import holder_name, lease
from scheduler import jobs

log = logging.getLogger("gridbot.scheduler")


@dataclass(frozen=True)
class JobSpec:
    name: str
    run: Callable[..., Awaitable[dict]]  # (core, now, **options) -> counts
    trigger: Callable[[object], object]  # settings -> an APScheduler trigger
    when: Callable[[object], str]  # settings -> the schedule in words
    description: str
    lease_ttl: timedelta
    # the job decides itself whether its period is due (digest, weekly): run it once at
    # start-up too, so a run missed while the bot was down happens when it is back
    catch_up: bool = False
    takes_force: bool = False
    misfire_grace_s: int = 60


def _every_minute(settings):
    return IntervalTrigger(minutes=1, timezone=settings.tz)


def _daily_digest(settings):
    at = settings.digest_at
    return CronTrigger(hour=at.hour, minute=at.minute, timezone=settings.tz)


def _weekly(settings):
    return CronTrigger(day_of_week="mon", hour=jobs.WEEKLY_AT.hour, minute=jobs.WEEKLY_AT.minute,
                       timezone=settings.tz)


def _hourly(settings):
    return CronTrigger(minute=7, timezone=settings.tz)


JOBS: dict[str, JobSpec] = {
    spec.name: spec
    for spec in (
        JobSpec("sweep", jobs.sweep, _every_minute, lambda s: "every minute",
                "reminders at 80% of the deadline, overdue, escalation up the tree and to admins",
                lease_ttl=timedelta(minutes=5)),
        JobSpec("digest", jobs.digest, _daily_digest, lambda s: f"daily at {s.digest_time} {s.timezone}",
                "morning digest: workers' tasks, supervisors' and admins' figures",
                lease_ttl=timedelta(minutes=30), catch_up=True, takes_force=True, misfire_grace_s=3600),
        JobSpec("weekly", jobs.weekly, _weekly,
                lambda s: f"Mondays at {jobs.WEEKLY_AT:%H:%M} {s.timezone}",
                "weekly overdue list (限期未完成整改问题清单) to supervisors and admins",
                lease_ttl=timedelta(minutes=30), catch_up=True, takes_force=True, misfire_grace_s=3600),
        JobSpec("autoclose", jobs.autoclose, _hourly, lambda s: "hourly at :07",
                "closes resolved cases not confirmed or reopened within GRIDBOT_AUTO_CLOSE_DAYS",
                lease_ttl=timedelta(minutes=10)),
    )
}


async def run_job(core, name: str, *, force: bool = True, **options) -> dict:
    """Run one job now under its lease. `force` (digest, weekly): run the current period even
    before its time or after it finished; messages already queued are still not sent again."""
    spec = JOBS[name]
    now = core.clock()
    if spec.takes_force:
        options["force"] = force
    async with lease(core.sessionmaker, f"job:{name}", holder_name(core), spec.lease_ttl, now) as acquired:
        if not acquired:
            return {"job": name, "skipped": "another process holds the lease"}
        result = await spec.run(core, now, **options)
    return {"job": name, **result}


async def _scheduled(core, name: str) -> None:
    try:
        result = await run_job(core, name, force=False)
    except Exception as e:
        health = getattr(core, "health", None)
        if health is not None and await health.down(e):
            log.warning("job %s skipped: the database is unavailable (it runs again on its schedule)", name)
        else:
            log.exception("job %s failed", name)
        return
    if any(isinstance(v, int) and v for k, v in result.items() if k != "checked"):
        log.info("job %s: %s", name, result)


def start_scheduler(core):
    """An APScheduler AsyncIOScheduler in the configured time zone with every job; started."""
    settings = core.settings
    sched = AsyncIOScheduler(timezone=settings.tz)
    now = core.clock().astimezone(settings.tz)
    for spec in JOBS.values():
        extra = {"next_run_time": now} if spec.catch_up else {}
        sched.add_job(_scheduled, spec.trigger(settings), args=[core, spec.name], id=spec.name, name=spec.name,
                      coalesce=True, max_instances=1, misfire_grace_time=spec.misfire_grace_s,
                      replace_existing=True, **extra)
    sched.start()
    return sched


def describe_jobs(settings, now: datetime | None = None) -> list[str]:
    """One line per job: name, schedule, next run (local time), what it does."""
    tz = settings.tz
    now = (now or utcnow()).astimezone(tz)
    lines = []
    for spec in JOBS.values():
        nxt = spec.trigger(settings).get_next_fire_time(None, now)
        when = nxt.astimezone(tz).strftime("%Y-%m-%d %H:%M %Z") if nxt else "—"
        lines.append(f"{spec.name:<10} {spec.when(settings):<32} next {when:<22} {spec.description}")
    return lines
