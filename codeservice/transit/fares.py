"""Fare rules of an operator, validated once, and what a trip costs. Money is integer cents throughout.

Metro (``kind: metro``)::

    {"lines": {"1": [["S01", 0], ["S02", 1300], ...], "2": [...]},   # station, position along the line in metres
     "bands": [[6000, 200], [16000, 400], [30000, 600]],               # up to N metres: fare in cents
     "max_fare": 800,                                                  # beyond the last band; unpaired taps
     "max_minutes": 240}                                               # longest trip (default 240)

A station on several lines is a transfer. The distance of a trip is the shortest path through the network
(the station-distance table, computed once when the rules are loaded).

Bus (``kind: bus``): ``{"lines": {"1": 200, "11": 100}, "default": 200}`` a flat fare a ride by line.

Scenic site (``kind: scenic``): ``{"sites": {"laoshan": {"price": 13000, "capacity": 20000}}}``.

Discounts: ``{"adult": 100, "student": 50, "elderly": 0, "disabled": 0}`` percent of the fare each card type
pays (a card type left out pays 100). The discounted fare is ``fare * percent // 100`` (rounded down to the
cent, in the passenger's favour), then capped at the credential's per-ride fare limit.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sdk.claims import CARD_TYPE_IDS

OPERATOR_KINDS = ("metro", "bus", "scenic")
MAX_CENTS = 10_000_000  # 100,000 yuan: far above any fare, far below integer trouble
_NAME_MAX = 64


class FareError(ValueError):
    """Fare rules that cannot be used; the message says where."""


def _cents(value: Any, where: str) -> int:
    if type(value) is not int or not 0 <= value <= MAX_CENTS:
        raise FareError(f"{where} must be whole cents from 0 to {MAX_CENTS}")
    return value


def _name(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value or len(value) > _NAME_MAX:
        raise FareError(f"{where} must be a name of 1 to {_NAME_MAX} characters")
    return value


def _mapping(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping) or not value:
        raise FareError(f"{where} must be a non-empty object")
    return value


def validate_discounts(discounts: Any) -> dict[str, int]:
    if not isinstance(discounts, Mapping):
        raise FareError("discounts must be an object of card type: percent")
    out = {}
    for card, percent in discounts.items():
        if card not in CARD_TYPE_IDS:
            raise FareError(f"discounts: unknown card type {card!r} (known: {', '.join(CARD_TYPE_IDS)})")
        if type(percent) is not int or not 0 <= percent <= 100:
            raise FareError(f"discounts: {card} must be a whole percent from 0 to 100")
        out[card] = percent
    return out


@dataclass(frozen=True)
class FareRules:
    """An operator's validated rules."""

    kind: str
    raw: Mapping[str, Any]
    discounts: Mapping[str, int]
    #: metro: shortest distance in metres between every pair of stations
    distances: Mapping[tuple[str, str], int] | None = None

    # -- what things cost -------------------------------------------------------------------------
    def metro_fare(self, origin: str | None, destination: str | None) -> int | None:
        """The fare between two stations, or None when either is not on the network."""
        assert self.distances is not None
        if origin is None or destination is None:
            return None
        distance = self.distances.get((origin, destination))
        if distance is None:
            return None
        for limit, fare in self.raw["bands"]:
            if distance <= limit:
                return int(fare)
        return int(self.raw["max_fare"])

    @property
    def max_fare(self) -> int:
        return int(self.raw["max_fare"])

    @property
    def max_trip_seconds(self) -> int:
        """An exit later than this after the entry is not the same trip: both taps are unpaired."""
        return int(self.raw.get("max_minutes", 240)) * 60

    def bus_fare(self, line: str | None) -> int:
        return int(self.raw["lines"].get(line, self.raw["default"]))

    def entry_price(self, site: str | None) -> int | None:
        site_rules = self.raw["sites"].get(site)
        return None if site_rules is None else int(site_rules["price"])

    def capacity(self, site: str) -> int | None:
        site_rules = self.raw["sites"].get(site)
        return None if site_rules is None else site_rules.get("capacity")

    def stations(self) -> list[str]:
        return sorted({s for line in self.raw.get("lines", {}).values() for s, _ in line}) if self.kind == "metro" \
            else []

    def charge(self, fare: int, card_type: str | None, fare_limit: int | None) -> tuple[int, int, int]:
        """(discount, capped, charged) for a list *fare*: the card type's share, then the credential's limit."""
        percent = self.discounts.get(card_type or "adult", 100)
        payable = fare * percent // 100
        charged = payable if fare_limit is None else min(payable, fare_limit)
        return fare - payable, payable - charged, charged

    def fare_for_gate(self, *, station: str | None, line: str | None) -> dict[str, int]:
        """The fare at a gate by card type, when it is known at the scan (bus line, scenic site); else {}."""
        if self.kind == "bus":
            base = self.bus_fare(line)
        elif self.kind == "scenic":
            price = self.entry_price(station)
            if price is None:
                return {}
            base = price
        else:
            return {}
        return {card: base * self.discounts.get(card, 100) // 100 for card in CARD_TYPE_IDS}


def load_rules(kind: str, fares: Any, discounts: Any) -> FareRules:
    """Validate an operator's rules; raise :class:`FareError` naming the first problem."""
    if kind not in OPERATOR_KINDS:
        raise FareError(f"kind must be one of {', '.join(OPERATOR_KINDS)}")
    fares = _mapping(fares, "fares")
    disc = validate_discounts(discounts)
    if kind == "metro":
        unknown = set(fares) - {"lines", "bands", "max_fare", "max_minutes"}
        if unknown:
            raise FareError(f"metro fares: unknown members {sorted(unknown)}")
        lines = _mapping(fares.get("lines"), "metro fares: lines")
        graph: dict[str, dict[str, int]] = {}
        for line_name, stops in lines.items():
            _name(line_name, "metro line name")
            if not isinstance(stops, list) or len(stops) < 2:
                raise FareError(f"metro line {line_name}: list at least two [station, metres] pairs")
            previous: tuple[str, int] | None = None
            for stop in stops:
                if not isinstance(stop, list) or len(stop) != 2:
                    raise FareError(f"metro line {line_name}: each stop is [station, metres]")
                station = _name(stop[0], f"metro line {line_name}: station")
                position = stop[1]
                if type(position) is not int or not 0 <= position <= 1_000_000:
                    raise FareError(f"metro line {line_name}: {station} position must be whole metres")
                graph.setdefault(station, {})
                if previous is not None:
                    if position <= previous[1]:
                        raise FareError(f"metro line {line_name}: positions must grow along the line")
                    length = position - previous[1]
                    for a, b in ((station, previous[0]), (previous[0], station)):
                        graph[a][b] = min(graph[a].get(b, length), length)
                previous = (station, position)
        if len(graph) > 2000:
            raise FareError("metro fares: at most 2000 stations")
        bands = fares.get("bands")
        if not isinstance(bands, list) or not bands:
            raise FareError("metro fares: bands must be a list of [metres, cents]")
        last_limit, last_fare = -1, -1
        for band in bands:
            if not isinstance(band, list) or len(band) != 2 or type(band[0]) is not int or band[0] <= last_limit:
                raise FareError("metro fares: bands are [metres, cents] with growing metres")
            fare = _cents(band[1], "metro fares: band fare")
            if fare < last_fare:
                raise FareError("metro fares: a longer band must not cost less")
            last_limit, last_fare = band[0], fare
        max_fare = _cents(fares.get("max_fare"), "metro fares: max_fare")
        minutes = fares.get("max_minutes", 240)
        if type(minutes) is not int or not 10 <= minutes <= 24 * 60:
            raise FareError("metro fares: max_minutes must be whole minutes from 10 to 1440")
        if max_fare < last_fare:
            raise FareError("metro fares: max_fare must be at least the last band's fare")
        return FareRules(kind, dict(fares), disc, _all_distances(graph))
    if kind == "bus":
        unknown = set(fares) - {"lines", "default"}
        if unknown:
            raise FareError(f"bus fares: unknown members {sorted(unknown)}")
        lines = _mapping(fares.get("lines"), "bus fares: lines")
        for line_name, fare in lines.items():
            _name(line_name, "bus line name")
            _cents(fare, f"bus line {line_name}")
        _cents(fares.get("default"), "bus fares: default")
        return FareRules(kind, dict(fares), disc)
    unknown = set(fares) - {"sites"}
    if unknown:
        raise FareError(f"scenic fares: unknown members {sorted(unknown)}")
    sites = _mapping(fares.get("sites"), "scenic fares: sites")
    for site, rules in sites.items():
        _name(site, "site name")
        if not isinstance(rules, Mapping) or set(rules) - {"price", "capacity"} or "price" not in rules:
            raise FareError(f"site {site}: give price (cents) and optionally capacity (entries a day)")
        _cents(rules["price"], f"site {site}: price")
        capacity = rules.get("capacity")
        if capacity is not None and (type(capacity) is not int or not 0 < capacity <= 10_000_000):
            raise FareError(f"site {site}: capacity must be a positive whole number")
    return FareRules(kind, dict(fares), disc)


def _all_distances(graph: Mapping[str, Mapping[str, int]]) -> dict[tuple[str, str], int]:
    """Shortest distance between every pair of stations (Dijkstra from each; networks are small)."""
    table: dict[tuple[str, str], int] = {}
    for source in graph:
        best = {source: 0}
        queue = [(0, source)]
        while queue:
            distance, station = heapq.heappop(queue)
            if distance > best.get(station, distance):
                continue
            for neighbour, length in graph[station].items():
                candidate = distance + length
                if candidate < best.get(neighbour, candidate + 1):
                    best[neighbour] = candidate
                    heapq.heappush(queue, (candidate, neighbour))
        for target, distance in best.items():
            table[(source, target)] = distance
    return table
