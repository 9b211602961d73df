"""Provider profiles of the loopback API-key emulator: success bodies shaped like each
provider's API and its error replies as documented.

:mod:`control_plane.sandbox.api_key_provider` serves them. A profile is made per
emulator (it keeps the emulator's objects: Stripe's refunds, Brave's quota use) and
answers with no key ever echoed: Stripe masks a key in its messages the way Stripe
does (prefix, asterisks, last four characters). One module per provider:
:mod:`.stripe_api`, :mod:`.openweathermap_api`, :mod:`.brave_api`.

Each module names its sources: the provider's documentation first, community
reports where the documentation shows no body (marked so).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from control_plane.connectors.model import Connector
from control_plane.sandbox._key_profile import KeyProfile
from control_plane.sandbox.brave_api import BraveProfile
from control_plane.sandbox.openweathermap_api import OpenWeatherMapProfile
from control_plane.sandbox.stripe_api import StripeProfile

__all__ = [
    "PROFILES",
    "BraveProfile",
    "KeyProfile",
    "OpenWeatherMapProfile",
    "StripeProfile",
    "profile_for",
]

#: Connector id -> a new profile for one emulator.
PROFILES: Mapping[str, Callable[[], KeyProfile]] = {
    "stripe": StripeProfile,
    "weather": OpenWeatherMapProfile,
    "web_search": BraveProfile,
}


def profile_for(connector: Connector) -> KeyProfile:
    make = PROFILES.get(connector.id)
    if make is None:
        raise ValueError(
            f"no API-key emulator profile for {connector.id}; one of {sorted(PROFILES)}"
        )
    return make()
