"""Typed calls of the Lua transition scripts: one method per script, ARGV order written here.

The scripts are the functions of one Redis function library: ``lua/_prelude.lua`` (the shared
rules) and each ``lua/<name>.lua`` as a function of its own. The library's head runs once,
when it is loaded, not at every call (as a script sent with EVALSHA would: defining the
prelude's functions was a quarter of a short script's work). The settings every call shares
(the history's and the queue streams' caps, the retention) are written into its text, not
passed with each call; its name carries a hash of that text, so clients of different versions
or settings on one server each call their own. Calls are FCALL
through the client's :class:`AutoPipeline` (calls made in one loop turn share a round trip,
and adjacent ones on runs of one queue share one FCALL);
a server without the library (restarted without its data, flushed) gets it loaded on the
first call that misses it. A method returns a :class:`Call`: awaited, it runs alone;
``add``-ed to a pipeline built for :meth:`Scripts.pipeline`, it shares the round trip with
other commands, and ``reply`` reads its result.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import re
import secrets
from collections.abc import Generator, Mapping
from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from typing import Any, Generic

from redis.asyncio import Redis

from flowbus._redis import replies
from flowbus._redis.autopipeline import AutoPipeline, Build, Commands
from flowbus._redis.keys import QUEUE_KEY_SUFFIXES, RUN_KEY_SUFFIXES, RunKeys
from flowbus._redis.merged_calls import CallMerger
from flowbus._redis.records import task_result_fields
from flowbus._redis.replies import (
    ClaimReply,
    CreateReply,
    DueReply,
    Parser,
    PauseReply,
    R,
    Reply,
    ResumeReply,
    Status,
)
from flowbus.settings import Settings
from flowbus.states import FINAL_TYPES

logger = logging.getLogger("flowbus")

Arg = str | bytes | int
#: Statuses of a call that may have ended the run.
_ENDED = (Status.ACCEPTED, Status.EXPIRED, Status.ORPHANED)


@dataclass(frozen=True, slots=True)
class Library:
    """The scripts as one function library: its code, and each script's function name."""

    code: str
    functions: dict[str, str]
    #: The function that runs several calls of the others at once (see merged_calls).
    calls: str


@cache
def library(history_maxlen: int, queue_maxlen: int, retention_seconds: int) -> Library:
    """The settings (:func:`settings_head`), the key names (:func:`key_names`), the prelude,
    then every script as a function (``KEYS``, ``ARGV``: its arguments) that starts with the
    prelude's ``begin``; named ``<script>_<hash of the library's text>``, so clients of other
    settings (or versions) on one server each call their own; and ``calls_<hash>``, which runs
    several calls of them in one (:mod:`flowbus._redis.merged_calls`)."""
    lua = files("flowbus._redis") / "lua"
    head = settings_head(history_maxlen, queue_maxlen, retention_seconds)
    prelude = head + key_names() + (lua / "_prelude.lua").read_text()
    bodies = {name: (lua / f"{name}.lua").read_text() for name in script_names()}
    tag = hashlib.sha256("\0".join([prelude, *bodies.values()]).encode()).hexdigest()[:16]
    functions = {name: f"{name}_{tag}" for name in bodies}
    code = [f"#!lua name=flowbus_{tag}", prelude]
    for name, body in bodies.items():
        code += [f"SCRIPTS.{name} = function(KEYS, ARGV)"]
        start = ["begin(KEYS, ARGV)", *(["name_run_keys()"] if _names_run_keys(body) else [])]
        code += [
            *start,
            body,
            "end",
            f"redis.register_function('{functions[name]}', SCRIPTS.{name})",
        ]
    code += [f"redis.register_function('calls_{tag}', run_calls)"]
    return Library("\n".join(code), functions, f"calls_{tag}")


def settings_head(history_maxlen: int, queue_maxlen: int, retention_seconds: int) -> str:
    """The library's first lines: the settings every call shares, written into its code
    rather than passed with each call (every argument of an ``FCALL`` costs the server about
    a thousand instructions). The caps and the retention go to commands as text (a number
    handed to a command is formatted anew); the history's cap is compared, a number."""
    return "\n".join(
        [
            "-- The settings of the clients that call this library (see scripts.settings_head):",
            "-- a run history's cap, the queue streams' cap, a finished run's retention (s).",
            f"local HISTORY_MAXLEN, QUEUE_MAXLEN, RETENTION = {int(history_maxlen)}, "
            f"'{int(queue_maxlen)}', '{int(retention_seconds)}'",
            "",
        ]
    )


#: Queues whose key names the library keeps between calls (then it starts over).
_QUEUE_KEYS_KEPT = 1000


#: The run keys besides its hash that a call names at once (the others only when it uses them:
#: see :func:`key_names`).
_EAGER_RUN_KEYS = ("HISTORY",)


def key_names() -> str:
    """The library's first lines: the keys a script touches, as locals of the library, and
    ``name_keys(run, tag)``, which names them for a call from its two ``KEYS`` (the run hash
    and its queue's tag) with the suffixes of :mod:`flowbus._redis.keys`, and the run's id
    (RUN_ID, the end of its hash's name). Each Lua string made costs about as much as a key
    passed, so a queue's key names are kept between calls, and the run keys most calls do not
    touch are named by ``name_run_keys()``, which the prelude's functions that use them call
    (and :func:`library` calls for a script that names one)."""
    eager = [name for name in RUN_KEY_SUFFIXES if name in _EAGER_RUN_KEYS]
    lazy = [name for name in RUN_KEY_SUFFIXES if name not in _EAGER_RUN_KEYS]
    queue = list(QUEUE_KEY_SUFFIXES)
    eager_names = ", ".join(f"run .. '{RUN_KEY_SUFFIXES[n]}'" for n in eager)
    lazy_names = ", ".join(f"RUN .. '{RUN_KEY_SUFFIXES[n]}'" for n in lazy)
    queue_names = ", ".join(f"tag .. '{s}'" for s in QUEUE_KEY_SUFFIXES.values())
    kept = ", ".join(f"q[{i}]" for i in range(1, len(queue) + 1))
    return "\n".join(
        [
            "-- The keys of a call (named by name_keys()), from flowbus/_redis/keys.py; QUEUE_KEPT",
            "-- is what the library keeps of the call's queue between calls (its key names, and",
            "-- counts of the entries it added to the queue's streams: see keep_capped()).",
            f"local RUN, RUN_ID, {', '.join(eager + lazy)}",
            f"local {', '.join(queue)}",
            "local QUEUE_KEPT, QUEUE_KEYS, QUEUE_KEYS_KEPT = nil, {}, 0",
            "local function name_keys(run, tag)",
            f"  RUN, RUN_ID, {', '.join(eager)} = run, string.sub(run, #tag + 6), {eager_names}",
            f"  {', '.join(lazy)} = {', '.join('nil' for _ in lazy)}",
            "  local q = QUEUE_KEYS[tag]",
            "  if not q then",
            f"    if QUEUE_KEYS_KEPT == {_QUEUE_KEYS_KEPT} then",
            "      QUEUE_KEYS, QUEUE_KEYS_KEPT = {}, 0",
            "    end",
            f"    q = {{{queue_names}, added = {{}}}}",
            "    QUEUE_KEYS[tag], QUEUE_KEYS_KEPT = q, QUEUE_KEYS_KEPT + 1",
            "  end",
            f"  {', '.join(queue)} = {kept}",
            "  QUEUE_KEPT = q",
            "end",
            "local function name_run_keys()",
            f"  if not {lazy[0]} then {', '.join(lazy)} = {lazy_names} end",
            "end",
            "",
        ]
    )


def _names_run_keys(body: str) -> bool:
    """Whether a script's own text names a run key that name_keys() leaves unnamed."""
    lazy = (name for name in RUN_KEY_SUFFIXES if name not in _EAGER_RUN_KEYS)
    return any(re.search(rf"\b{name}\b", body) for name in lazy)


@cache
def script_names() -> tuple[str, ...]:
    """Every script shipped in ``lua/`` (the prelude is not a script of its own)."""
    lua = files("flowbus._redis") / "lua"
    names = (entry.name.removesuffix(".lua") for entry in lua.iterdir())
    return tuple(sorted(name for name in names if not name.startswith("_")))


def _flag(value: bool) -> str:
    return "1" if value else "0"


def _token(attempt: int | None) -> str:
    """An execution's fencing token as a script reads it ("" for callers that are none)."""
    return "" if attempt is None else str(attempt)


class Call(Generic[R]):
    """One script call, its arguments and call id fixed: awaited alone, or added to a pipeline.

    The call id lets a copy resent after a dropped connection find the call on the run and
    get the first reply, not a refusal; awaiting a call again sends that same copy. A
    ``durable`` call (a resume, a move to a final state) is followed by ``WAIT`` when
    ``FLOWBUS_CLUSTER_WAIT_REPLICAS`` asks for replicas to have it before it returns.
    """

    __slots__ = ("_command", "_read", "_scripts", "_wait", "keys")

    def __init__(
        self,
        scripts: Scripts,
        name: str,
        keys: RunKeys,
        args: tuple[Arg, ...],
        read: Parser[R],
        *,
        durable: bool = False,
    ) -> None:
        self._scripts = scripts
        self._read = read
        self.keys = keys
        self._command = scripts.command(name, keys, args)
        self._wait = durable and scripts.wait_replicas > 0

    def add(self, pipe: Commands) -> None:
        """Add the call (and its ``WAIT``) to a pipeline built for :meth:`Scripts.pipeline`."""
        pipe.execute_command("FCALL", *self._command)
        if self._wait:  # on the same connection: WAIT counts the replicas that have its writes
            self._scripts.add_wait(pipe, self.keys.run)

    def reply(self, own: list[Any]) -> R:
        """The call's typed reply from the pipeline's replies from its own on (its script's,
        then its ``WAIT``'s, if any); :class:`MalformedEntry` if it is none."""
        reply = replies.parse(own[0], self._read)
        if self._wait:
            self._scripts.check_replicas(self.keys, own[1])
        return reply

    def __await__(self) -> Generator[Any, None, R]:
        return self._scripts.run(self).__await__()


class Scripts:
    """The transition scripts, registered once per Redis client."""

    def __init__(self, redis: Redis, settings: Settings) -> None:
        self._redis = redis
        self._retention = settings.retention_seconds
        self._library = library(
            settings.run_events_maxlen, settings.queue_events_maxlen, settings.retention_seconds
        )
        scripts = {function: name for name, function in self._library.functions.items()}
        self._batch = AutoPipeline(redis, self._load, CallMerger(self._library.calls, scripts))
        #: Call ids: a random prefix and a counter, unique without a random draw per call; the
        #: run's state names the last one applied, where a number would be taken for the name's
        #: length of a state an earlier version wrote, so an id starts with a letter.
        self._op_prefix = f"c{secrets.token_hex(8)}"
        self._op_count = itertools.count()
        self.wait_replicas = settings.cluster_wait_replicas
        self._wait_ms = settings.cluster_wait_timeout_ms

    def add_wait(self, pipe: Commands, key: str) -> None:
        """``WAIT`` on the connection of the node serving ``key``, after the commands sent
        there before it (WAIT has no key: ``node_of`` names the node on a cluster)."""
        pipe.execute_command("WAIT", self.wait_replicas, self._wait_ms, node_of=key)

    def check_replicas(self, keys: RunKeys, acked: Any) -> None:
        if isinstance(acked, int) and acked >= self.wait_replicas:
            return
        logger.warning(
            "Run %s: %s of %d replicas had its last change after %d ms; a failover now may lose it",
            keys.run.rpartition(":")[2],
            acked,
            self.wait_replicas,
            self._wait_ms,
        )

    def command(self, name: str, keys: RunKeys, args: tuple[Arg, ...]) -> tuple[Any, ...]:
        """FCALL's arguments for script ``name``: ``args``, then a new call id."""
        names = keys.as_list()
        op = f"{self._op_prefix}{next(self._op_count):x}"  # fixed before any build (a reload)
        return (self._library.functions[name], len(names), *names, *args, op)

    async def pipeline(self, build: Build) -> list[Any]:
        """Run the commands ``build`` adds to a pipeline, script calls among them, in one round
        trip, shared with every other call of this loop turn.

        A call that finds no library (a server restarted without its data, or flushed) loads
        it and sends ``build``'s commands once more, so its other commands must be idempotent.
        """
        return await self._batch.execute(build)

    async def _load(self) -> None:
        """Load the library (on every primary of a cluster, where FUNCTION LOAD goes)."""
        await self._redis.function_load(self._library.code, replace=True)

    async def run(self, call: Call[R]) -> R:
        """Run one call alone; a run it ends has its index (another slot), if it has one,
        expired after it."""
        reply = call.reply(await self._batch.execute(call.add))
        if reply.state_type in FINAL_TYPES and reply.status in _ENDED and call.keys.indexed:
            await self._redis.expire(call.keys.index, self._retention)
        return reply

    # -- runs (create_run, claim_run, start_run, set_state, force_state, start_scheduled .lua)

    def create_run(
        self,
        keys: RunKeys,
        *,
        flow_name: str,
        name: str,
        deployment_id: str,
        parameters: bytes,
        initial: str,
        enqueue: bool,
        parent_id: str,
        scheduled_ms: int | None,
        start: bool,
        holder: str = "",
        first_lease: str = "",
    ) -> Call[CreateReply]:
        """Create the run of ``keys`` (its id and queue are its key's) in ``initial``
        (SCHEDULED or PENDING); ``start`` runs it at once, held by the process ``holder``
        (``first_lease``: its lease in ms, when none is written yet)."""
        args = (flow_name, name, deployment_id, parameters, initial)
        tail = (_flag(enqueue), parent_id, "" if scheduled_ms is None else scheduled_ms)
        held = (_flag(start), holder, first_lease)
        return Call(self, "create_run", keys, (*args, *tail, *held), replies.created)

    def claim_run(
        self, keys: RunKeys, *, holder: str = "", first_lease: str = "", flow: str = ""
    ) -> Call[ClaimReply]:
        """Start a waiting run held by ``holder`` and read its hash, in one step; with
        ``flow``, only a run of that flow (a queue entry's flow is a hint: the run's decides)."""
        return Call(self, "claim_run", keys, (holder, first_lease, flow), replies.claimed)

    def start_run(self, keys: RunKeys, *, holder: str = "", first_lease: str = "") -> Call[Reply]:
        """SCHEDULED/PENDING → RUNNING, held by ``holder``."""
        return Call(self, "start_run", keys, (holder, first_lease), replies.plain)

    def end_orphan(self, keys: RunKeys) -> Call[Reply]:
        """End a held run whose holder is gone (a sweeper's step)."""
        return Call(self, "end_orphan", keys, (), replies.plain, durable=True)

    def set_state(
        self,
        keys: RunKeys,
        *,
        kind: str,
        name: str,
        message: str = "",
        retry: bool = False,
        result: bytes | None = None,
        expect: str | None = None,
        enqueue: bool = False,
        ack_group: str = "",
        ack_entry_id: str = "",
        attempt: int | None = None,
        task_results: Mapping[str, bytes] | None = None,
    ) -> Call[Reply]:
        """Propose a state (not PAUSED); ``expect`` guards the current kind, ``ack_*``
        acknowledges a queue delivery and ``task_results`` are written in the same step.
        ``attempt``: the token of the execution proposing it (refused if superseded)."""
        args = (kind, name, message, _flag(retry), b"" if result is None else result)
        tail = (expect or "", _flag(enqueue), ack_group, ack_entry_id, _token(attempt))
        every = (*args, *tail, *task_result_fields(task_results or {}))
        return Call(self, "set_state", keys, every, replies.plain, durable=kind in FINAL_TYPES)

    def force_state(
        self,
        keys: RunKeys,
        *,
        kind: str,
        name: str,
        message: str = "",
        pause_key: str = "",
        pause_deadline_ms: int | None = None,
        reschedule: bool = False,
    ) -> Call[Reply]:
        """Move to any state, skipping the rules (Prefect's ``force=True``); a PAUSED state
        takes its pause key, deadline and ``reschedule``."""
        deadline = "" if pause_deadline_ms is None else pause_deadline_ms
        args = (kind, name, message, pause_key, deadline, _flag(reschedule))
        final = kind in FINAL_TYPES
        return Call(self, "force_state", keys, args, replies.plain, durable=final)

    def start_scheduled(self, keys: RunKeys) -> Call[DueReply]:
        """Enqueue a SCHEDULED run whose start came; drop a stale deadline."""
        return Call(self, "start_scheduled", keys, (), replies.due)

    # -- pauses (pause.lua, resume.lua, expire_pause.lua and the suspension scripts) ---------

    def pause(
        self,
        keys: RunKeys,
        *,
        key: str,
        timeout_ms: int | None,
        reschedule: bool,
        state_name: str,
        input_prefix: str = "",
        schema: str = "",
        description: str = "",
        optional: bool = False,
        input_type: str = "",
        resume_on_timeout: bool = False,
        early: str = "",
        early_refusal: str = "",
        attempt: int | None = None,
        judged: bool = False,
    ) -> Call[PauseReply]:
        """Pause a RUNNING run under ``key``; ``input_prefix`` ("" none) names its input,
        ``optional`` says an empty input is valid, ``input_type`` is kept with the key.

        Input that came for ``key`` early is shown (``early=""``, status EARLY), taken
        (``"take"``: the key fires, nothing pauses) or refused (``"refuse"``: dropped, the
        PAUSED event's message is ``early_refusal``). ``attempt``: the pausing execution's.
        ``judged``: the input has validators a JSON schema cannot express, so resumers ask
        its owner to judge it."""
        timeout = "" if timeout_ms is None else timeout_ms
        args = (key, timeout, _flag(reschedule), state_name, input_prefix, schema, description)
        tail = (_flag(optional), input_type, "resume" if resume_on_timeout else "fail")
        more = (early, early_refusal, _token(attempt), _flag(judged))
        return Call(self, "pause", keys, (*args, *tail, *more), replies.paused)

    def resume(
        self,
        keys: RunKeys,
        *,
        key: str = "",
        data: bytes | None = None,
        early: bool = False,
        proposal: str = "",
        checked: str = "",
        carried: str = "",
    ) -> Call[ResumeReply]:
        """Resume the pause under ``key`` ("" any) with the encoded input ``data``, if any;
        ``early`` stores it for a pause under ``key`` the run has not reached yet. A judged
        ``proposal`` is applied once, whether its owner or its resumer sends it (or both).
        ``checked``: the SHA-1 of the schema the input was checked against; a pause with
        another schema (or judged, without a proposal) replies SCHEMA with its own, nothing
        written. ``carried``: the input as JSON text, for the paused process (see
        ``resume.lua``)."""
        given = data is not None
        args = (key, data or b"", _flag(given), _flag(early), proposal, checked, carried)
        return Call(self, "resume", keys, args, replies.resumed, durable=True)

    def expire_pause(self, keys: RunKeys, *, key: str = "") -> Call[DueReply]:
        """Time out the run's pause under ``key`` ("" any) if its deadline passed: FAILED, or
        resumed without input if the pause said so."""
        return Call(self, "expire_pause", keys, (key,), replies.due, durable=True)

    def request_suspension(self, keys: RunKeys, *, key: str, timeout_ms: int | None) -> Call[Reply]:
        """RUNNING → PAUSED "Suspending" under ``key``."""
        timeout = "" if timeout_ms is None else timeout_ms
        return Call(self, "request_suspension", keys, (key, timeout), replies.plain)

    def complete_suspension(self, keys: RunKeys, *, attempt: int | None = None) -> Call[Reply]:
        """Suspending → Suspended, by the execution ``attempt``."""
        return Call(self, "complete_suspension", keys, (_token(attempt),), replies.plain)

    def pause_to_suspension(
        self, keys: RunKeys, *, key: str = "", message: str, attempt: int | None = None
    ) -> Call[Reply]:
        """An in-process pause under ``key`` ("" any) becomes a suspension (``attempt``: the
        execution handing it off, if it is one)."""
        args = (key, message, _token(attempt))
        return Call(self, "pause_to_suspension", keys, args, replies.plain)

    def save_results(
        self, keys: RunKeys, results: Mapping[str, bytes], *, attempt: int | None = None
    ) -> Call[Reply]:
        """Write task results, unless the execution ``attempt`` was superseded."""
        pairs = task_result_fields(results)
        return Call(self, "save_results", keys, (_token(attempt), *pairs), replies.plain)

    # -- messages (send_input.lua) -----------------------------------------------------------

    def send_input(
        self,
        keys: RunKeys,
        *,
        key: str,
        payload: bytes,
        sender: str,
        idempotency_key: str,
        maxlen: int,
        indexed: bool = False,
    ) -> Call[Reply]:
        """Add an input (JSON text) for ``receive_input``, once per ``idempotency_key``;
        ``indexed`` (a named input) finds it by key later and refuses a taken key."""
        args = (key, payload, sender, idempotency_key, maxlen, _flag(indexed))
        return Call(self, "send_input", keys, args, replies.plain)
