"""The city's clock, the one copy for every part: its time zone, today's date there, the operating day of
transit, and a resident's age on a day.

It lives in the SDK because a gate needs it offline (the operating day of a tap) and the SDK imports
nothing of the service; the service imports it from here.
"""

from __future__ import annotations

import datetime as dt
import os
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

#: The city's zone, by its IANA name: ``CITYCODE_CITY_TZ``, Asia/Shanghai (China Standard Time, UTC+8, no
#: daylight saving) unless set. Gates and the service must agree on it.
CITY_TZ_NAME = os.environ.get("CITYCODE_CITY_TZ") or "Asia/Shanghai"


def zone(name: str) -> dt.tzinfo:
    """The zone called *name*; ValueError naming the variable when there is none by that name. Asia/Shanghai
    works without the system's or Python's zone data (a fixed UTC+8: China has had no daylight saving since 1991)."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        if name == "Asia/Shanghai":
            return dt.timezone(dt.timedelta(hours=8), "CST")
        raise ValueError(f"CITYCODE_CITY_TZ: no time zone called {name!r} (an IANA name such as Asia/Shanghai)") \
            from None


#: Certificates are valid from and until local dates, and operating days are local: the city's zone.
CITY_TZ = zone(CITY_TZ_NAME)
#: Operating days start at 04:00 city time: a ride at 01:00 belongs to the day before, as in the metro's
#: timetable and the operators' clearing.
DAY_START_HOUR = 4


def city_today() -> dt.date:
    """Today's date in the city: the date certificates are valid from and until."""
    return dt.datetime.now(CITY_TZ).date()


def service_day(at: float) -> str:
    """The operating day (YYYY-MM-DD) a moment (a UNIX time) belongs to."""
    local = dt.datetime.fromtimestamp(at, CITY_TZ) - dt.timedelta(hours=DAY_START_HOUR)
    return local.date().isoformat()


def age_on(birth: dt.date, day: dt.date) -> int:
    """Whole years from *birth* to *day*."""
    return day.year - birth.year - ((day.month, day.day) < (birth.month, birth.day))
