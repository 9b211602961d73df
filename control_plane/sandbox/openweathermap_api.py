"""OpenWeatherMap's free APIs as the API-key emulator answers them (developer secret).

Sources: https://openweathermap.org/current, /forecast5 and /api/geocoding-api for
the bodies; the 401 and 429 bodies are community-reproduced (``cod`` is sometimes a
number, sometimes a string), as the catalog's weather.yaml notes.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from typing import Any

from control_plane.connectors.model import Tool
from control_plane.sandbox._key_profile import KeyProfile, Query
from control_plane.sandbox._resource_api import Reply


class OpenWeatherMapProfile(KeyProfile):
    errors = ("invalid_key", "rate_limit", "rate_limit_string_cod")
    _INVALID = "Invalid API key. Please see https://openweathermap.org/faq#error401 for more info."
    _BLOCKED = (
        "Your account is temporary blocked due to exceeding of requests limitation of your "
        "subscription type. Please choose the proper subscription https://openweathermap.org/price"
    )

    def new_key(self) -> str:
        return secrets.token_hex(16)  # OpenWeatherMap keys are 32 hex digits

    def missing_key(self, now: float) -> Reply:
        return 401, {"cod": 401, "message": self._INVALID}, {}

    def invalid_key(self, key: str, now: float) -> Reply:
        return 401, {"cod": 401, "message": self._INVALID}, {}

    def rate_limited(self, retry_after: int, now: float) -> Reply:
        return 429, {"cod": 429, "message": self._BLOCKED}, {}

    def error(self, name: str, key: str, retry_after: int, now: float) -> Reply:
        if name == "invalid_key":
            return self.invalid_key(key, now)
        if name == "rate_limit":
            return self.rate_limited(retry_after, now)
        if name == "rate_limit_string_cod":
            return 429, {"cod": "429", "message": self._BLOCKED}, {}
        raise ValueError(f"unknown OpenWeatherMap error {name!r}; one of {self.errors}")

    def status_error(self, status: int, retry_after: int, now: float) -> Reply:
        if status == 429:
            return self.rate_limited(retry_after, now)
        if status == 401:
            return self.missing_key(now)
        return status, {"cod": str(status), "message": "Internal error"}, {}

    def answer(self, tool: Tool, path: Query, query: Query, body: Any, now: float) -> Reply:
        if tool.name == "weather.geocode":
            return self._geocode(query)
        try:
            lat, lon = float(query["lat"]), float(query["lon"])
        except KeyError:
            return 400, {"cod": "400", "message": "Nothing to geocode"}, {}
        except ValueError:
            return 400, {"cod": "400", "message": "wrong latitude"}, {}
        if not -90 <= lat <= 90:
            return 400, {"cod": "400", "message": "wrong latitude"}, {}
        if not -180 <= lon <= 180:
            return 400, {"cod": "400", "message": "wrong longitude"}, {}
        units = query.get("units", "standard")
        if tool.name == "weather.current":
            return 200, self._current(lat, lon, units, now), {}
        steps = int(query.get("cnt", "40"))
        start = int(now) // 10800 * 10800 + 10800  # the next 3-hour mark
        items = [self._step(lat, lon, units, start + i * 10800) for i in range(steps)]
        city = {
            "id": 2988507,
            "name": "Sandbox",
            "coord": {"lat": lat, "lon": lon},
            "country": "FR",
            "population": 1000,
            "timezone": 3600,
            "sunrise": start - 20000,
            "sunset": start + 10000,
        }
        return 200, {"cod": "200", "message": 0, "cnt": steps, "list": items, "city": city}, {}

    @staticmethod
    def _temp(kelvin: float, units: str) -> float:
        if units == "metric":
            return round(kelvin - 273.15, 2)
        if units == "imperial":
            return round((kelvin - 273.15) * 9 / 5 + 32, 2)
        return round(kelvin, 2)

    def _main(self, lat: float, units: str, offset: float = 0.0) -> dict[str, Any]:
        kelvin = 300.0 - abs(lat) * 0.4 + offset
        t = self._temp
        return {
            "temp": t(kelvin, units),
            "feels_like": t(kelvin - 0.8, units),
            "temp_min": t(kelvin - 1.5, units),
            "temp_max": t(kelvin + 1.5, units),
            "pressure": 1015,
            "humidity": 64,
            "sea_level": 1015,
            "grnd_level": 1003,
        }

    @staticmethod
    def _wind(units: str) -> dict[str, Any]:
        speed = 3.6 if units != "imperial" else 8.05  # m/s, or miles/hour
        return {"speed": speed, "deg": 240, "gust": round(speed * 1.6, 2)}

    _WEATHER = [{"id": 803, "main": "Clouds", "description": "broken clouds", "icon": "04d"}]

    def _current(self, lat: float, lon: float, units: str, now: float) -> dict[str, Any]:
        return {
            "coord": {"lon": lon, "lat": lat},
            "weather": self._WEATHER,
            "base": "stations",
            "main": self._main(lat, units),
            "visibility": 10000,
            "wind": self._wind(units),
            "clouds": {"all": 75},
            "dt": int(now),
            "sys": {"country": "FR", "sunrise": int(now) - 20000, "sunset": int(now) + 10000},
            "timezone": 3600,
            "id": 2988507,
            "name": "Sandbox",
            "cod": 200,
        }

    def _step(self, lat: float, lon: float, units: str, at: int) -> dict[str, Any]:
        moment = dt.datetime.fromtimestamp(at, dt.UTC)
        return {
            "dt": at,
            "main": self._main(lat, units, offset=(at // 10800 % 8 - 4) * 0.7),
            "weather": self._WEATHER,
            "clouds": {"all": 75},
            "wind": self._wind(units),
            "visibility": 10000,
            "pop": 0.2,
            "sys": {"pod": "d" if 6 <= moment.hour < 18 else "n"},
            "dt_txt": moment.strftime("%Y-%m-%d %H:%M:%S"),
        }

    @staticmethod
    def _geocode(query: Query) -> Reply:
        q = query.get("q", "").strip()
        if not q:
            return 400, {"cod": "400", "message": "Nothing to geocode"}, {}
        parts = [p.strip() for p in q.split(",")]
        name = parts[0].title()
        country = parts[-1].upper() if len(parts) > 1 and len(parts[-1]) == 2 else "GB"
        digest = hashlib.sha256(q.lower().encode()).digest()
        lat = round(digest[0] / 255 * 120 - 60, 4)
        lon = round(digest[1] / 255 * 340 - 170, 4)
        match = {
            "name": name,
            "local_names": {"en": name},
            "lat": lat,
            "lon": lon,
            "country": country,
        }
        if len(parts) == 3:
            match["state"] = parts[1]
        return 200, [match][: int(query.get("limit", "5"))], {}
