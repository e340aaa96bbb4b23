"""Scheduled jobs (APScheduler 3.x). Jobs only enqueue a command; the daemon's loop does the work.

Commands: ``recluster`` (sessions that changed), ``rescan`` (every folder, a safety net for
missed events), ``cleanup`` (daily), ``stuck`` (analyses that never came back), ``backup`` (an
online copy of the index, every ``index_backup_every_h``).
"""

from __future__ import annotations

import queue
from datetime import datetime, timedelta

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from dupligoned.adapters.config import Config


def start_scheduler(cfg: Config, commands: queue.Queue[str]) -> BackgroundScheduler:
    """A started scheduler whose jobs put command names on ``commands``."""
    sched = BackgroundScheduler(daemon=True, job_defaults={"coalesce": True, "max_instances": 1,
                                                             "misfire_grace_time": 3600})

    def enqueue(name: str) -> None:
        commands.put(name)

    sched.add_job(enqueue, IntervalTrigger(seconds=cfg.sessions.recluster_every_s), args=["recluster"], id="recluster")
    sched.add_job(enqueue, IntervalTrigger(seconds=max(60.0, min(cfg.queue.stuck_after_s / 4, 600.0))),
                  args=["stuck"], id="stuck")
    if cfg.watch.rescan_every_min > 0:
        every = timedelta(minutes=cfg.watch.rescan_every_min)
        sched.add_job(enqueue, IntervalTrigger(seconds=every.total_seconds(), start_date=datetime.now() + every),
                      args=["rescan"], id="rescan")
    if cfg.index_backup_every_h > 0:
        # Checked hourly at most; the daemon backs up when the last backup is older than the period.
        sched.add_job(enqueue, IntervalTrigger(seconds=min(3600.0, cfg.index_backup_every_h * 3600)),
                      args=["backup"], id="backup")
    hour, minute = (int(x) for x in cfg.cleanup.daily_at.split(":"))
    sched.add_job(enqueue, CronTrigger(hour=hour, minute=minute), args=["cleanup"], id="cleanup")
    sched.start()
    return sched
