"""``near`` on ``Location.position``: great-circle distance in portable SQL.

https://hl7.org/fhir/R4/location.html#positional. A point is near when its great-circle
(haversine) distance from the searched point is at most the distance asked. Two filters:

1. a bounding box on the indexed ``latitude``/``longitude`` (an index range scan; the
   box is tight for a sphere: the circle's northernmost/southernmost latitudes and its
   widest longitude span, split in two across the antimeridian, every longitude when the
   circle covers a pole);
2. the exact test, ``hav(dlat) + cos(lat0) cos(lat) hav(dlon) <= hav(d / R)``.

SQLite only has ``sin``/``cos`` when it was compiled with its math functions, which a
Python build may not be; so the exact test uses arithmetic only. With ``dlat`` and ``dlon``
bounded by the box, ``hav`` and ``sin`` of them are Taylor polynomials cut where the next
term is below 1e-17 of the result, and ``cos(lat) = cos(lat0 + dlat)`` expands with
``cos(lat0)``/``sin(lat0)`` computed here. The SQL is therefore the haversine formula to
within float rounding, on both engines, with no function calls: a few terms for the usual
10 km, a dozen for a circle that covers a pole. Longitudes across the antimeridian are
brought back to [-180, 180] by a constant offset per box range (no CASE).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Float, and_, case, literal, or_

EARTH_RADIUS_KM = 6371.0088  # IUGG mean radius
_RAD = math.pi / 180


@dataclass(frozen=True, slots=True)
class Box:
    """Degrees. ``lon_ranges``: one or two ``(low, high, offset)``; for a longitude in a
    range, ``longitude - center + offset`` is its difference from the center in [-180, 180]
    (the offset is ±360 across the antimeridian)."""

    lat_low: float
    lat_high: float
    lon_ranges: tuple[tuple[float, float, float], ...]


def bounding_box(latitude: float, longitude: float, distance_km: float) -> Box:
    """The smallest latitude/longitude box around the circle (a spherical Earth)."""
    theta = min(distance_km / EARTH_RADIUS_KM, math.pi)
    phi = latitude * _RAD
    low, high = phi - theta, phi + theta
    ranges: tuple[tuple[float, float, float], ...]
    if low <= -math.pi / 2 or high >= math.pi / 2:  # a pole is inside: every longitude
        lat_low, lat_high = max(low, -math.pi / 2) / _RAD, min(high, math.pi / 2) / _RAD
        if longitude >= 0:
            ranges = ((longitude - 180, 180.0, 0.0), (-180.0, longitude - 180, 360.0))
        else:
            ranges = ((-180.0, longitude + 180, 0.0), (longitude + 180, 180.0, -360.0))
        return Box(lat_low, lat_high, ranges)
    span = math.asin(min(1.0, math.sin(theta) / math.cos(phi))) / _RAD
    west, east = longitude - span, longitude + span
    if west < -180:
        ranges = ((west + 360, 180.0, -360.0), (-180.0, east, 0.0))
    elif east > 180:
        ranges = ((west, 180.0, 0.0), (-180.0, east - 360, 360.0))
    else:
        ranges = ((west, east, 0.0),)
    return Box(low / _RAD, high / _RAD, ranges)


# -- polynomials --------------------------------------------------------------------------


def _terms(coefficient: Any, largest: float) -> list[float]:
    """Coefficients ``c_n`` of a series in ``x**2`` until ``|c_n| largest**(2n)`` is
    negligible next to the first term."""
    out: list[float] = []
    first = None
    for n in range(40):
        c = coefficient(n)
        out.append(c)
        size = abs(c) * largest ** (2 * n)
        first = size if first is None else first
        if size <= 1e-17 * first or size == 0:
            break
    return out


def _hav_coefficient(n: int) -> float:  # hav(x) = sum (-1)^n x^(2n+2) / (2 (2n+2)!)
    return float((-1) ** n / (2 * math.factorial(2 * n + 2)))


def _sin_coefficient(n: int) -> float:  # sin(x) = sum (-1)^n x^(2n+1) / (2n+1)!
    return float((-1) ** n / math.factorial(2 * n + 1))


def _series(u: Any, coefficients: list[float]) -> Any:
    """``sum c_n u**(n+1)`` as a flat sum of products: nested Horner parentheses would
    overflow SQLite's parser stack for the longer series (~17 levels)."""
    total: Any = None
    power: Any = None
    for c in coefficients:
        power = u if power is None else power * u
        term = _num(c) * power
        total = term if total is None else total + term
    return total


def _num(value: float) -> Any:
    return literal(value, Float)


def _haversines(lat: Any, lon: Any, value_lat: float, value_lon: float, box: Box) -> list[Any]:
    """Per longitude range of ``box``: (the row is in the range, its haversine value)."""
    phi0 = value_lat * _RAD
    cos0, sin0 = math.cos(phi0), math.sin(phi0)
    dlat = (lat - _num(value_lat)) * _num(_RAD)
    max_dlat = max(abs(box.lat_high - value_lat), abs(box.lat_low - value_lat)) * _RAD
    u_lat = dlat * dlat
    hav_dlat = _series(u_lat, _terms(_hav_coefficient, max_dlat))
    sin_terms = _terms(_sin_coefficient, max_dlat)  # sin(x) = x (1 + c1 x^2 + c2 x^4 ...)
    sin_dlat = dlat if len(sin_terms) == 1 else dlat * (_num(1.0) + _series(u_lat, sin_terms[1:]))
    # cos(lat) = cos(lat0 + dlat) = cos0 (1 - 2 hav(dlat)) - sin0 sin(dlat)
    cos_lat = _num(cos0) - _num(2 * cos0) * hav_dlat - _num(sin0) * sin_dlat
    out = []
    for low, high, offset in box.lon_ranges:
        dlon = (lon - _num(value_lon - offset)) * _num(_RAD)
        largest = max(abs(low - value_lon + offset), abs(high - value_lon + offset)) * _RAD
        hav_dlon = _series(dlon * dlon, _terms(_hav_coefficient, largest))
        out.append((lon.between(_num(low), _num(high)), hav_dlat + _num(cos0) * cos_lat * hav_dlon))
    return out


def within(
    lat: Any, lon: Any, value_lat: float, value_lon: float, km: float
) -> ColumnElement[bool]:
    """SQL: the row's ``lat``/``lon`` columns (degrees) are within ``km`` of the point."""
    box = bounding_box(value_lat, value_lon, km)
    in_lat = lat.between(_num(box.lat_low), _num(box.lat_high))
    theta = km / EARTH_RADIUS_KM
    if theta >= math.pi:  # the whole sphere
        everywhere: ColumnElement[bool] = in_lat
        return everywhere
    limit = _num(math.sin(theta / 2) ** 2)
    pieces = _haversines(lat, lon, value_lat, value_lon, box)
    return and_(in_lat, or_(*(and_(inside, h <= limit) for inside, h in pieces)))


def distance_order(lat: Any, lon: Any, value_lat: float, value_lon: float, km: float) -> Any:
    """SQL: a value growing with the distance from the point (its haversine, 0 to 1) for
    rows within ``km``; 2 for the others (which ``near`` leaves out anyway)."""
    box = bounding_box(value_lat, value_lon, km)
    pieces = _haversines(lat, lon, value_lat, value_lon, box)
    return case(*pieces, else_=_num(2.0))
