"""The web page: how soon a pause shows in an open browser, and what the page costs idle.

- ``pause_to_visible``: a Chromium page holds the Inbox open (its event stream connected);
  a child process pauses a run for typed input ``--n`` times, one at a time. The latency is
  from the PAUSED transition (its timestamp, Redis's clock) to the moment the run's row is in
  the page's DOM (``Date.now()`` from a MutationObserver); both clocks are this machine's, in
  milliseconds. Each run is resumed, and gone from the inbox, before the next pause.
- ``idle``: ``--paused`` runs paused (their process then gone, the runs left PAUSED), the
  Inbox open in the browser; then Redis's command counters over ``--idle-seconds``, scaled to
  a minute. Only the UI server is connected to Redis meanwhile.

Needs Chromium at /usr/bin/chromium (``apt-get install chromium``) and the ``ui`` extra.
Prints one JSON object on stdout; progress goes to stderr. Usage::

    python bench/ui_latency.py [--n 100] [--paused 1000] [--idle-seconds 60]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import socket
import subprocess
import sys
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from _server import CommandCounter, machine, point_flowbus_at, private_server
from playwright.sync_api import Page, sync_playwright

from flowbus import RunInput, flow, pause_flow_run, resume_flow_run

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
#: Records when each inbox row first appears and when it leaves (ms, the page's clock).
OBSERVER = """
window.seen = {}; window.gone = {};
new MutationObserver(() => {
  const now = Date.now(), here = new Set();
  document.querySelectorAll('.inbox-row').forEach(r => {
    here.add(r.dataset.runId);
    if (!(r.dataset.runId in window.seen)) window.seen[r.dataset.runId] = now;
  });
  for (const id in window.seen) if (!here.has(id) && !(id in window.gone)) window.gone[id] = now;
}).observe(document, {subtree: true, childList: true});
"""


class Answer(RunInput):
    approved: bool = True


@flow(name="ui-bench")
async def waits(seconds: int) -> bool:
    answer = await pause_flow_run(wait_for_input=Answer, timeout=seconds)
    assert isinstance(answer, Answer)
    return answer.approved


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _pauser(url: str, prefix: str, conn: Connection) -> None:
    """Child process: on ("one",), pause a run and send [(id, PAUSED ms)]; on ("many", N),
    pause N runs, say so, and leave without ending them (they stay PAUSED); on ("resume", id),
    resume that run."""
    point_flowbus_at(url, prefix)

    async def main() -> None:
        from flowbus._redis.runtime import get_runtime
        from flowbus._redis.watch import last_id, tail

        runtime = await get_runtime()
        stream = runtime.store.keys.queue("default").events()
        while True:
            command, arg = await asyncio.to_thread(conn.recv)
            if command == "stop":
                return
            if command == "resume":
                await resume_flow_run(arg, {"approved": True})
                conn.send("ok")
                continue
            after = await last_id(runtime, stream)
            flows = [asyncio.ensure_future(waits(3600)) for _ in range(int(arg))]
            paused: list[tuple[str, int]] = []
            async for event in tail(runtime, stream, after=after):  # blocking reads
                if event.type == "PAUSED":
                    paused.append((event.run_id, event.ts_ms))
                    if len(paused) == len(flows):
                        break
            conn.send(paused)
            if command == "many":
                os._exit(0)  # leave them PAUSED, holding nothing

    asyncio.run(main())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_ui(env: dict[str, str], port: int) -> subprocess.Popen[str]:
    flowbus = str(Path(sys.executable).with_name("flowbus"))
    proc = subprocess.Popen(
        [flowbus, "ui", "--port", str(port)], env=env, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if "flowbus ui on" not in line:
        raise RuntimeError(f"the UI did not start: {line!r}")
    return proc


def pause_to_visible(page: Page, conn: Connection, n: int) -> list[float]:
    samples: list[float] = []
    for i in range(n):
        conn.send(("one", 1))
        [(run_id, paused_ms)] = conn.recv()
        page.wait_for_function(f"window.seen[{json.dumps(run_id)}] !== undefined")
        samples.append(page.evaluate(f"window.seen[{json.dumps(run_id)}]") - paused_ms)
        conn.send(("resume", run_id))
        conn.recv()
        page.wait_for_function(f"window.gone[{json.dumps(run_id)}] !== undefined")
        if (i + 1) % 20 == 0:
            log(f"pause_to_visible: {i + 1}/{n}")
    return samples


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)

    return {"samples": len(ordered), "p50": at(0.5), "p90": at(0.9), "max": ordered[-1]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--paused", type=int, default=1000)
    parser.add_argument("--idle-seconds", type=float, default=60.0)
    args = parser.parse_args()
    with private_server() as url:
        prefix = "uibench"
        point_flowbus_at(url, prefix)
        env = {**os.environ, "FLOWBUS_REDIS_URL": url, "FLOWBUS_KEY_PREFIX": prefix}
        port = free_port()
        ui = start_ui(env, port)
        counter = CommandCounter(url)
        ctx = multiprocessing.get_context("spawn")
        ours, theirs = ctx.Pipe()
        pauser = ctx.Process(target=_pauser, args=(url, prefix, theirs))
        pauser.start()
        try:
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
                page = browser.new_page(bypass_csp=True)  # to evaluate the probes
                page.add_init_script(OBSERVER)
                page.goto(f"http://127.0.0.1:{port}/inbox")
                page.wait_for_selector("body.connected")
                samples = pause_to_visible(page, ours, args.n)
                log(f"pausing {args.paused} runs")
                ours.send(("many", args.paused))
                ours.recv()
                pauser.join(60)
                page.reload()
                page.wait_for_selector("body.connected")
                rows = page.locator(".inbox-row").count()
                started = time.monotonic()
                page.goto(f"http://127.0.0.1:{port}/runs")
                runs_page_ms = (time.monotonic() - started) * 1000
                page.goto(f"http://127.0.0.1:{port}/inbox")
                page.wait_for_selector("body.connected")
                log(f"idle for {args.idle_seconds} s with {rows} runs in the inbox")
                counter.reset()
                time.sleep(args.idle_seconds)
                counts = counter.read()
                browser.close()
            per_minute = counts.total * 60 / args.idle_seconds
            result: dict[str, Any] = {
                "benchmark": "ui_latency",
                "machine": machine(counter),
                "pause_to_visible_ms": percentiles(samples),
                "idle": {
                    "paused_runs": args.paused,
                    "inbox_rows_shown": rows,
                    "seconds": args.idle_seconds,
                    "redis_commands": counts.by_command,
                    "redis_commands_per_minute": round(per_minute, 2),
                },
                "runs_page_load_ms": round(runs_page_ms, 1),
            }
            print(json.dumps(result, indent=2))
        finally:
            if pauser.is_alive():
                ours.send(("stop", None))
                pauser.join(10)
            ui.terminate()
            ui.wait(10)
            counter.close()


if __name__ == "__main__":
    main()
