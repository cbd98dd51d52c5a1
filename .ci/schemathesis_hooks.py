"""Schemathesis hooks for usage-gateway: the rules of `GET /v1/usage` that OpenAPI cannot state.

OpenAPI describes each query parameter on its own; `GET /v1/usage` also has rules that tie
parameters to each other or to the deployment, stated in the parameter descriptions and in API.md:

- `end` must be after `start`, and `[start, end)` at most `server.max_range` long (relative
  values such as `now`, `today` and `-24h` resolve against the clock);
- a query may span at most `server.max_buckets` buckets, and a DigitalOcean source at most
  `max_upstream_calls` (agents x buckets) vendor calls;
- `source` names, and the `<source>/` prefix of an `agent`, must name configured sources;
- `tz` must name a zone of the server's time zone database: the document states it as a plain
  string (an enum froze one tzdata release into the document and broke generated clients), so a
  schema-valid `tz` is almost never a zone.

Schemathesis draws every parameter independently, so a schema-valid (positive) case can break
these rules and is then rightly answered 400. For positive cases only, `map_case` repairs exactly
these rules and nothing else, so the `positive_data_acceptance` check stays meaningful for every
other aspect. Negative cases are never touched: they must still be refused.

These rules hold for `GET /v1/usage.csv` and `GET /v1/usage/focus` too, which take the same
parameters.

Configuration comes from the environment (set by `.ci/schemathesis.sh`):
`ST_SOURCES` (comma list of configured source names), `ST_MAX_RANGE_DAYS`.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import zlib

import schemathesis

USAGE_PATHS = ("/v1/usage", "/v1/usage.csv", "/v1/usage/focus")
SOURCES = [s for s in os.environ.get("ST_SOURCES", "").split(",") if s]
MAX_RANGE = dt.timedelta(days=int(os.environ.get("ST_MAX_RANGE_DAYS", "366")))
# The longest span each bucket size keeps within max_buckets and within 250 DigitalOcean calls
# for the demo's 4 agents (62 buckets).
SPAN = {
    "hour": dt.timedelta(days=2),
    "day": dt.timedelta(days=60),
    "week": dt.timedelta(days=360),
}
DAY = dt.timedelta(days=1)
# Zones every tzdata release has, over a wide spread of offsets (whole, half and quarter hours,
# both sides of UTC, with and without DST); the document's examples are among them.
ZONES = [
    "UTC",
    "Europe/Berlin",
    "Asia/Kolkata",
    "America/New_York",
    "America/St_Johns",
    "America/Sao_Paulo",
    "Asia/Kathmandu",
    "Asia/Tokyo",
    "Australia/Lord_Howe",
    "Pacific/Chatham",
    "Pacific/Kiritimati",
    "Pacific/Pago_Pago",
]
# Local midnight of a date lies within 14 hours of UTC midnight in every zone.
SLACK = dt.timedelta(hours=15)


def _positive(case) -> bool:
    meta = getattr(case, "meta", None)
    return meta is not None and meta.generation.mode.is_positive


RELATIVE = re.compile(r"^-([0-9]{1,7})([mhdw])$")
UNIT = {"m": dt.timedelta(minutes=1), "h": dt.timedelta(hours=1), "d": DAY, "w": 7 * DAY}


def _relative(value):
    """The instant of `now`, `today`, `yesterday` or `-<n><unit>` (local days as UTC days: the
    slack covers the zone), None for other values, and False when it is out of range here."""
    now = dt.datetime.now(dt.timezone.utc)
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    fixed = {"now": now, "today": midnight, "yesterday": midnight - DAY}
    if value in fixed:
        return fixed[value]
    m = RELATIVE.match(value)
    if not m:
        return None
    try:
        return now - int(m.group(1)) * UNIT[m.group(2)]
    except OverflowError:
        return False


def _instant(value):
    """The instant a `start`/`end` value names (dates as UTC midnight), or None."""
    if not isinstance(value, str):
        return None
    relative = _relative(value)
    if relative is not None:
        return relative or None
    try:
        if len(value) == 10:
            return dt.datetime.combine(dt.date.fromisoformat(value), dt.time(), dt.timezone.utc)
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None


def _shift(value: str, delta: dt.timedelta) -> str:
    """`value` moved by `delta`, in the same form (date or date-time with its offset; a keyword
    or relative value as the date-time it names now)."""
    relative = _relative(value)
    if relative:
        return (relative + delta).isoformat()
    if len(value) == 10:
        return (dt.date.fromisoformat(value) + delta).isoformat()
    moved = dt.datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00")) + delta
    return moved.isoformat()


def _repair_range(query: dict) -> None:
    bucket = query.get("bucket") if isinstance(query.get("bucket"), str) else "none"
    longest = min(SPAN.get(bucket, MAX_RANGE), MAX_RANGE) - SLACK
    now = dt.datetime.now(dt.timezone.utc)
    for key in ("start", "end"):
        # A relative value this Python cannot represent (`-9999999w`) becomes one it can.
        if isinstance(query.get(key), str) and _relative(query[key]) is False:
            query[key] = (now - 2 * DAY).isoformat()
    start, end = query.get("start"), query.get("end")
    s, e = _instant(start), _instant(end)
    if s is not None and s.year > 9990:
        query["start"] = start = _shift(start, -dt.timedelta(days=3660))
        s = _instant(start)
    if s is not None and e is not None:
        if not (s + SLACK + SLACK < e <= s + longest):
            query["end"] = _shift(start, DAY)
    elif s is not None:
        # Only `start`: the range ends now.
        if not (s + SLACK < now - SLACK and now - s <= longest):
            query["end"] = _shift(start, DAY)
    elif e is not None:
        # Only `end`: the seven days before it.
        if dt.timedelta(days=7) > longest:
            query["start"] = _shift(end, -DAY)
    elif dt.timedelta(days=7) > longest:
        # Neither: the last seven whole days.
        today = now.date()
        query["start"] = (today - DAY).isoformat()
        query["end"] = today.isoformat()


def _configured(piece: str) -> str:
    name = piece.strip()
    if not name or name in SOURCES or not SOURCES:
        return piece
    return SOURCES[zlib.crc32(name.encode()) % len(SOURCES)]


def _map_list(values, one):
    if values is None:
        return None
    items = values if isinstance(values, list) else [values]
    mapped = [",".join(one(p) for p in item.split(",")) if isinstance(item, str) else item for item in items]
    return mapped if isinstance(values, list) else mapped[0]


def _agent(piece: str) -> str:
    # The gateway trims the piece, then reads everything before the first `/` as a source name.
    trimmed = piece.strip()
    if "/" not in trimmed or not SOURCES:
        return piece
    source, rest = trimmed.split("/", 1)
    if source in SOURCES:
        return piece
    return f"{SOURCES[zlib.crc32(source.encode()) % len(SOURCES)]}/{rest}"


def _zone(value):
    if not isinstance(value, str) or value in ZONES:
        return value
    return ZONES[zlib.crc32(value.encode()) % len(ZONES)]


@schemathesis.hook
def map_case(context, case):
    if case.operation.path not in USAGE_PATHS or case.method.upper() != "GET" or not _positive(case):
        return case
    if not isinstance(case.query, dict):
        return case
    query = dict(case.query)
    if "tz" in query:
        query["tz"] = _zone(query["tz"])
    _repair_range(query)
    if "source" in query:
        query["source"] = _map_list(query["source"], _configured)
    if "agent" in query:
        query["agent"] = _map_list(query["agent"], _agent)
    case.query = query
    return case
