"""The declarative connector catalog: one YAML definition per provider (see loader)."""
