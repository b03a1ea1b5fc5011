"""Circuit states cached over the state table: one GetItem per circuit and TTL, never a scan.

- A lookup of a fresh entry never touches DynamoDB. A stale entry (older than the TTL) is read
  again with one GetItem in a background thread, one read per entry at a time (single-flight):
  concurrent lookups share it.
- A lookup waits for that read only a bounded time, whatever DynamoDB does (answers, refuses,
  or accepts the connection and never answers): ``STALE_WAIT_MS`` after the read started when a
  state is cached (then the cached state is served, flagged ``stale``), ``FIRST_READ_WAIT_MS``
  when nothing is cached (then ``StoreUnavailableError``: the server answers 503 and the client
  applies its policy). A read still under way goes on in the background and fills the cache.
- When DynamoDB cannot be reached, a cached value is still served, flagged ``stale``; the next
  read is tried after a short back-off, so an outage does not slow every lookup down.
- Outcomes the function reports feed a sliding window per circuit; a window that says "trip"
  moves a CLOSED (or HALF_OPEN) circuit to OPEN with a conditional UpdateItem on ``version``.
- An item whose ``state`` or ``version`` cannot be understood (see ``item_problem``) is never served
  as a guessed state: a lookup raises ``BadItemError`` (the server answers 503 ``BadItem``), it is
  logged once per circuit, and it is never tripped.

boto3 is imported lazily (in a background thread right after registration), never on the
start-up path: it costs about 250 ms.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .config import Settings
from .logs import log
from .outcomes import OutcomeWindow

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

CLOSED = "CLOSED"
OPEN = "OPEN"
HALF_OPEN = "HALF_OPEN"
FORCED_OPEN = "FORCED_OPEN"
DISABLED = "DISABLED"
UNKNOWN = "UNKNOWN"
STATES = (CLOSED, OPEN, HALF_OPEN, FORCED_OPEN, DISABLED)
MAX_VERSION = 2**63 - 1
UPDATED_BY = "extension"
#: After a failed read, serve the cached value this long before trying DynamoDB again.
MAX_RETRY_BACKOFF_MS = 1000
#: The DynamoDB client's limits: one attempt (botocore's ``total_max_attempts`` counts calls,
#: ``max_attempts`` counts retries), bounded connect and read. A read that hangs costs the
#: background thread at most about CONNECT + READ; lookups never wait that long.
DYNAMODB_CONNECT_TIMEOUT_S = 0.5
DYNAMODB_READ_TIMEOUT_S = 1.0
DYNAMODB_ATTEMPTS = 1
#: How long after a read of a cached (stale) entry started a lookup waits for it before serving
#: the cached state flagged ``stale``. A healthy DynamoDB answers well within it.
STALE_WAIT_MS = 200
#: How long after a read of an entry with nothing cached started a lookup waits for it before
#: answering UNKNOWN (503: the client's policy decides). Loading boto3 on a cold start comes
#: before the read starts and does not count; with it the wait is capped at COLD_WAIT_MS.
FIRST_READ_WAIT_MS = 800
COLD_WAIT_MS = 1500
#: The background worker (prefetch, refresh on INVOKE, trips) waits at most this long for a read.
WORKER_WAIT_S = 5.0


class StoreUnavailableError(RuntimeError):
    """DynamoDB could not be read and nothing is cached for the circuit."""


class BadItemError(RuntimeError):
    """The circuit's item cannot be understood (``state`` or ``version`` garbled): the server answers
    503 ``BadItem`` and the client's policy decides, rather than guessing a state."""


def _now_ms() -> float:
    return time.monotonic() * 1000.0


def _plain(attribute: dict[str, Any]) -> Any:
    """One DynamoDB attribute value as a plain Python value (the types the table uses)."""
    if "S" in attribute:
        return attribute["S"]
    if "N" in attribute:
        text = attribute["N"]
        return int(text) if text.lstrip("-").isdigit() else float(text)
    if "BOOL" in attribute:
        return bool(attribute["BOOL"])
    if "NULL" in attribute:
        return None
    return None


def _int(item: dict[str, Any], key: str, default: int = 0) -> int:
    value = item.get(key)
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else default


def item_problem(item: dict[str, Any] | None) -> str:
    """Why the item cannot be served ("" when it can): a ``state`` that is missing or not one of the
    five states (exactly as written: ``closed`` is not ``CLOSED``), or a ``version`` that is not an
    integer from 0 to 2^63-1 (a trip's write is conditional on it). An item without ``version``
    (written by hand, never by the breaker) is read as version 0, as the health checker and the
    operator command do, and a trip's write is then conditional on its having none."""
    if item is None:
        return ""
    problems = []
    state = item.get("state")
    if "state" not in item:
        problems.append("state is missing")
    elif not isinstance(state, str) or state not in STATES:
        problems.append(f"state {_shown(state)} is not one of {', '.join(STATES)}")
    version = item.get("version")
    if "version" in item and not _is_version(version):
        problems.append(f"version {_shown(version)} is not an integer from 0 to 2^63-1")
    return "; ".join(problems)


def _is_version(value: Any) -> bool:
    if isinstance(value, float) and value.is_integer():  # "7.0" or "7E0" as DynamoDB may return them
        value = int(value)
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_VERSION


def _shown(value: Any) -> str:
    """A stored value for a message: its repr, cut short, and what it was stored as when not a string."""
    text = repr(value)
    text = text if len(text) <= 40 else text[:37] + "..."
    return text if isinstance(value, str) else f"{text} ({type(value).__name__})"


@dataclass
class Entry:
    circuit_id: str
    item: dict[str, Any] | None = None  # None: no such circuit in the table (cached too)
    fetched_at: float = 0.0  # monotonic ms of the last successful read; 0: never read
    stale: bool = False  # the last read failed: the value is older than the TTL
    retry_at: float = 0.0  # monotonic ms before which a failed read is not retried
    error: str = ""
    trials_version: int = -1  # the HALF_OPEN version that trials were counted for
    trials_used: int = 0
    problem: str = ""  # why the cached item cannot be served (see item_problem); "" when it can
    logged_problem: str = ""  # the last problem logged (each problem is logged once per circuit)
    trip_refused: str = ""  # the problem a refused trip was last logged for
    reading: threading.Event | None = None  # the read under way (set when it ends), if any
    read_started: float = 0.0  # monotonic ms the read under way reached DynamoDB; 0: loading the SDK
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def loaded(self) -> bool:
        return self.fetched_at > 0

    @property
    def state(self) -> str:
        if self.item is None:
            return UNKNOWN
        state = self.item.get("state")
        return state if isinstance(state, str) else UNKNOWN

    @property
    def version(self) -> int:
        return _int(self.item, "version") if self.item is not None else 0


@dataclass(frozen=True)
class Lookup:
    circuit_id: str
    state: str
    version: int
    cached: bool
    age_ms: int
    stale: bool
    permitted: bool
    found: bool

    def as_json(self) -> dict[str, Any]:
        if not self.found:
            return {"circuitId": self.circuit_id, "state": UNKNOWN}
        return {
            "circuitId": self.circuit_id,
            "state": self.state,
            "version": self.version,
            "cached": self.cached,
            "ageMs": self.age_ms,
            "stale": self.stale,
            "permitted": self.permitted,
        }


class CircuitStore:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._entries: dict[str, Entry] = {}
        self._windows: dict[str, OutcomeWindow] = {}
        self._lock = threading.Lock()
        self._client: DynamoDBClient | None = None
        self._client_lock = threading.Lock()
        self._trips: set[str] = set()  # circuits with a trip write under way
        self.reads = 0  # GetItem calls made (for logs and tests)

    # -- DynamoDB -------------------------------------------------------------------------
    def client(self) -> DynamoDBClient:
        """The DynamoDB client, created once (the first caller pays for importing boto3)."""
        if self._client is not None:
            return self._client
        with self._client_lock:
            if self._client is None:
                import boto3
                from botocore.config import Config

                # Short timeouts and exactly one attempt: a slow DynamoDB must not make the breaker
                # slow; the cached value is served and the read is tried again later.
                config = Config(
                    connect_timeout=DYNAMODB_CONNECT_TIMEOUT_S,
                    read_timeout=DYNAMODB_READ_TIMEOUT_S,
                    retries={"total_max_attempts": DYNAMODB_ATTEMPTS, "mode": "standard"},
                    tcp_keepalive=True,
                )
                self._client = boto3.client("dynamodb", config=config)
            return self._client

    def _get_item(self, circuit_id: str) -> dict[str, Any] | None:
        self.reads += 1
        answer = self.client().get_item(TableName=self.settings.table, Key={"circuitId": {"S": circuit_id}})
        raw = answer.get("Item")
        if raw is None:
            return None
        return {key: _plain(dict(value)) for key, value in raw.items()}

    # -- cache ------------------------------------------------------------------------------
    def entry(self, circuit_id: str) -> Entry:
        entry = self._entries.get(circuit_id)
        if entry is None:
            with self._lock:
                entry = self._entries.setdefault(circuit_id, Entry(circuit_id))
        return entry

    def _fresh(self, entry: Entry, now: float) -> bool:
        return entry.loaded and not entry.stale and now - entry.fetched_at < self.settings.cache_ttl_ms

    def _begin_read(self, entry: Entry, *, force: bool = False) -> threading.Event | None:
        """The read under way for the entry, else a new one in a background thread (one at a time
        per entry); None when no read is needed (fresh, or in back-off after a failure) and not ``force``."""
        return self._join_or_begin(entry, force)[0]

    def _join_or_begin(self, entry: Entry, force: bool) -> tuple[threading.Event | None, bool]:
        """``_begin_read``, and whether the read is a new one (False: joined, or none)."""
        with entry.lock:
            if entry.reading is not None:
                return entry.reading, False
            now = _now_ms()
            if not force and (self._fresh(entry, now) or now < entry.retry_at):
                return None, False
            done = entry.reading = threading.Event()
            entry.read_started = 0.0
        try:
            threading.Thread(target=self._read, args=(entry, done), name="circuit-breaker-read", daemon=True).start()
        except RuntimeError as error:  # no thread to be had: this read fails like an unreachable DynamoDB
            self._finish(entry, done, None, error, _now_ms())
        return done, True

    def _read(self, entry: Entry, done: threading.Event) -> None:
        began = _now_ms()
        try:
            self.client()  # on a cold start, loading boto3 comes first: it is not DynamoDB's time
            entry.read_started = _now_ms()
            item = self._get_item(entry.circuit_id)
        except Exception as error:  # any SDK or network error (or no SDK at all): serve what we have
            self._finish(entry, done, None, error, began)
        else:
            self._finish(entry, done, item, None, began)

    def _finish(
        self,
        entry: Entry,
        done: threading.Event,
        item: dict[str, Any] | None,
        error: BaseException | None,
        began: float,
    ) -> None:
        with entry.lock:
            try:
                newer = entry.fetched_at > began and entry.item is not None  # a trip stored its write meanwhile
                if error is None:
                    if newer and (item is None or _int(item, "version") < entry.version):
                        item = entry.item  # what this read saw predates that write
                    self._store(entry, item)
                elif not newer:
                    entry.error = f"{type(error).__name__}: {error}"
                    entry.retry_at = _now_ms() + min(self.settings.cache_ttl_ms, MAX_RETRY_BACKOFF_MS)
                    if entry.loaded and not entry.stale:
                        log(
                            "WARNING",
                            "DynamoDB unreachable, serving the cached state",
                            circuitId=entry.circuit_id,
                            error=entry.error,
                        )
                    entry.stale = entry.loaded
            finally:
                entry.reading = None
                done.set()

    def _wait(self, entry: Entry, done: threading.Event, asked: float, loaded: bool) -> bool:
        """Waits for the read ``done`` within the lookup's bound (see the module); True if it ended."""
        bound = STALE_WAIT_MS if loaded else FIRST_READ_WAIT_MS
        cap = asked + (STALE_WAIT_MS if loaded else COLD_WAIT_MS)
        while True:
            started = entry.read_started
            deadline = min(started + bound, cap) if started else cap
            remaining = deadline - _now_ms()
            if remaining <= 0:
                return done.is_set()
            if started:
                return done.wait(remaining / 1000.0)
            if done.wait(min(remaining, 10.0) / 1000.0):  # the SDK is still loading: look again soon
                return True

    def refresh(self, entry: Entry, *, force: bool = False) -> bool:
        """Reads the entry again unless it is fresh (or in back-off) and waits for the read (the
        worker's path, not a lookup's); True if DynamoDB was read. ``force``: read even a fresh entry,
        after any read already under way (which may predate what the caller knows).
        Raises StoreUnavailableError when nothing is cached and DynamoDB could not be read."""
        if force and (under_way := entry.reading) is not None:
            under_way.wait(WORKER_WAIT_S)
        done = self._begin_read(entry, force=force)
        if done is not None:
            done.wait(WORKER_WAIT_S)
        if not entry.loaded:
            raise StoreUnavailableError(entry.error or "DynamoDB has not answered yet")
        return done is not None

    def _store(self, entry: Entry, item: dict[str, Any] | None) -> None:
        previous = entry.state
        entry.item = item
        entry.problem = item_problem(item)
        if entry.problem and entry.problem != entry.logged_problem:
            log(
                "ERROR",
                "circuit item unreadable: answering 503 BadItem (the client's policy decides) and not tripping it "
                "until the item is repaired",
                circuitId=entry.circuit_id,
                problem=entry.problem,
            )
        entry.logged_problem = entry.problem
        if entry.state != previous:  # a new state starts a new window (calls before it do not count)
            with self._lock:
                window = self._windows.get(entry.circuit_id)
                if window is not None:
                    window.reset()
        entry.fetched_at = _now_ms()
        entry.stale = False
        entry.error = ""
        entry.retry_at = 0.0

    def refresh_stale(self, circuit_ids: tuple[str, ...] = ()) -> int:
        """Reads every stale entry (and the named circuits) again, all at once; waits for the reads
        (at most WORKER_WAIT_S); returns how many were started."""
        with self._lock:  # connection threads add entries meanwhile
            known = list(self._entries)
        reads = [done for c in sorted(set(circuit_ids) | set(known)) if (done := self._begin_read(self.entry(c)))]
        deadline = time.monotonic() + WORKER_WAIT_S
        for done in reads:
            done.wait(max(deadline - time.monotonic(), 0.0))
        return len(reads)

    def lookup(self, circuit_id: str, *, acquire: bool = False) -> Lookup:
        """The circuit's state, from the cache when fresh, else after a read that it waits for only
        within its bound (STALE_WAIT_MS, FIRST_READ_WAIT_MS). Raises StoreUnavailableError when
        nothing is cached and DynamoDB did not answer in time."""
        entry = self.entry(circuit_id)
        asked = _now_ms()
        loaded = entry.loaded
        done, own = self._join_or_begin(entry, False)
        answered = done is not None and self._wait(entry, done, asked, loaded)
        with entry.lock:
            if not entry.loaded:
                raise StoreUnavailableError(
                    entry.error or f"DynamoDB did not answer within {FIRST_READ_WAIT_MS} ms (still trying)"
                )
            if entry.problem:
                raise BadItemError(entry.problem)
            late = done is not None and not answered  # a read is still under way: this state is past its TTL
            return Lookup(
                circuit_id=circuit_id,
                state=entry.state,
                version=entry.version,
                cached=not (own and answered) or entry.stale,  # cached: this lookup did not read DynamoDB
                age_ms=int(_now_ms() - entry.fetched_at),
                stale=entry.stale or late,
                permitted=self._permitted(entry, acquire),
                found=entry.item is not None,
            )

    def _permitted(self, entry: Entry, acquire: bool) -> bool:
        """Whether a call may go through; in HALF_OPEN a limited number of trials per version."""
        state = entry.state
        if state in (CLOSED, DISABLED):
            return True
        if state != HALF_OPEN or entry.item is None:
            return False
        version = entry.version
        if entry.trials_version != version:
            entry.trials_version, entry.trials_used = version, 0
        limit = _int(entry.item, "halfOpenTrialsLeft") or _int(entry.item, "halfOpenTrials") or 1
        if entry.trials_used >= limit:
            return False
        if acquire:
            entry.trials_used += 1
        return True

    # -- outcomes ---------------------------------------------------------------------------
    def record(self, circuit_id: str, success: bool, duration_ms: float) -> bool:
        """Adds one outcome; returns True when it calls for a trip (the caller schedules it)."""
        entry = self.entry(circuit_id)
        settings = self.settings
        with self._lock:
            window = self._windows.get(circuit_id)
            if window is None:
                window = self._windows[circuit_id] = OutcomeWindow(
                    window_ms=settings.window_ms,
                    min_calls=settings.min_calls,
                    failure_rate=settings.failure_rate,
                    slow_call_ms=settings.slow_call_ms,
                )
            state = entry.state
            if state in (OPEN, FORCED_OPEN, DISABLED):
                return False  # calls that passed a disabled breaker or raced an open one do not count
            verdict = window.add(_now_ms(), success, duration_ms)
            trial_failed = state == HALF_OPEN and not success
            if not (verdict.trip and state == CLOSED) and not trial_failed:
                return False
            if entry.problem:  # its version cannot be trusted: the conditional write would be a guess
                self._refuse_trip(entry)
                return False
            if circuit_id in self._trips:
                return False
            self._trips.add(circuit_id)
            return True

    def _refuse_trip(self, entry: Entry) -> None:
        """Logs (once per problem) that the outcomes call for a trip the unreadable item prevents."""
        problem = entry.problem
        if problem and entry.trip_refused != problem:
            entry.trip_refused = problem
            log(
                "ERROR",
                "the outcomes call for a trip, but the circuit item is unreadable: not tripping",
                circuitId=entry.circuit_id,
                problem=problem,
            )

    def trip(self, circuit_id: str) -> bool:
        """Moves the circuit to OPEN with a write conditional on the cached version."""
        entry = self.entry(circuit_id)
        try:
            return self._trip(entry)
        finally:
            with self._lock:
                self._trips.discard(circuit_id)

    def _trip(self, entry: Entry) -> bool:
        circuit_id = entry.circuit_id
        for _ in range(3):
            if not entry.loaded or entry.stale:
                try:
                    self.refresh(entry, force=True)
                except StoreUnavailableError:
                    return False
            if entry.problem:
                self._refuse_trip(entry)
                return False
            state, version = entry.state, entry.version
            versioned = entry.item is not None and "version" in entry.item
            with self._lock:
                window = self._windows.get(circuit_id)
                verdict = window.verdict(_now_ms()) if window is not None else None
            if state == HALF_OPEN:
                reason = "a trial call failed in HALF_OPEN (reported by the function)"
            elif state == CLOSED and verdict is not None and verdict.trip:
                reason = verdict.describe(self.settings.window_ms) + " (reported by the function)"
            else:
                return False  # already OPEN, held by an operator, unknown, or the window recovered
            now = int(time.time() * 1000)
            try:
                answer = self.client().update_item(
                    TableName=self.settings.table,
                    Key={"circuitId": {"S": circuit_id}},
                    UpdateExpression=(
                        "SET #state = :open, #version = :next, openedAt = :now, updatedAt = :now, "
                        "#reason = :reason, updatedBy = :by, consecutiveSuccesses = :zero"
                    ),
                    ConditionExpression=(
                        "#version = :expected AND #state = :current"
                        if versioned
                        else "attribute_exists(circuitId) AND attribute_not_exists(#version) AND #state = :current"
                    ),
                    ExpressionAttributeNames={"#state": "state", "#version": "version", "#reason": "reason"},
                    ExpressionAttributeValues={
                        ":open": {"S": OPEN},
                        ":next": {"N": str(version + 1)},
                        **({":expected": {"N": str(version)}} if versioned else {}),
                        ":current": {"S": state},
                        ":now": {"N": str(now)},
                        ":reason": {"S": reason},
                        ":by": {"S": UPDATED_BY},
                        ":zero": {"N": "0"},
                    },
                    ReturnValues="ALL_NEW",
                )
            except Exception as error:
                code = getattr(error, "response", {}).get("Error", {}).get("Code", "")
                if code == "ConditionalCheckFailedException":
                    log("INFO", "circuit changed under the trip, reading it again", circuitId=circuit_id)
                    try:
                        self.refresh(entry, force=True)
                    except StoreUnavailableError:
                        return False
                    continue
                log(
                    "ERROR",
                    "could not trip the circuit",
                    circuitId=circuit_id,
                    error=f"{type(error).__name__}: {error}",
                )
                return False
            attributes = answer.get("Attributes", {})
            with entry.lock:
                self._store(entry, {key: _plain(dict(value)) for key, value in attributes.items()})
            with self._lock:
                if window is not None:
                    window.reset()
            log(
                "INFO",
                "circuit tripped",
                circuitId=circuit_id,
                fromState=state,
                toState=OPEN,
                version=version + 1,
                reason=reason,
            )
            return True
        return False
