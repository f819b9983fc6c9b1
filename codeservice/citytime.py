"""The city's clock: its time zone, today's date there, and age on a day."""

from __future__ import annotations

import datetime as dt

#: Certificates are valid from and until local dates: China Standard Time (UTC+8, no daylight saving).
CITY_TZ = dt.timezone(dt.timedelta(hours=8), "CST")


def city_today() -> dt.date:
    """Today's date in the city (China Standard Time): the date certificates are valid from and until."""
    return dt.datetime.now(CITY_TZ).date()


# -- showing -----------------------------------------------------------------------------------
def age_on(birth: dt.date, day: dt.date) -> int:
    return day.year - birth.year - ((day.month, day.day) < (birth.month, birth.day))

