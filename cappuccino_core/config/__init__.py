"""Configuration: the flat settings, the market a home was built on, the components they make.

- ``settings``: one typed model read from ``CAPPUCCINO_*`` variables and ``cappuccino.toml``
  (re-exported here: ``from cappuccino_core.config import Settings, load_settings``).
- ``market_record``: the market a home was built on, recorded at its first ingest.
- ``components``: the core's components built from the settings (bar source, freshness policy),
  in one place, so no lower package reads the settings itself.
"""

from cappuccino_core.config.settings import (
    DEFAULT_SYMBOLS,
    OVERRIDABLE,
    DataSourceKind,
    RunOverrides,
    Settings,
    SettingsError,
    load_settings,
    settings_for,
)

__all__ = ["DEFAULT_SYMBOLS", "OVERRIDABLE", "DataSourceKind", "RunOverrides", "Settings", "SettingsError",
           "load_settings", "settings_for"]
