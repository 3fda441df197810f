"""CKAN plugin wiring: every hook delegates to a module that does the work."""
from __future__ import annotations

from typing import Any

import ckan.plugins as plugins
import ckan.plugins.toolkit as tk

from . import config, validators


@tk.blanket.config_declarations
class DCORDepotPlugin(plugins.SingletonPlugin):
    plugins.implements(plugins.IConfigurable, inherit=True)
    plugins.implements(plugins.IValidators)

    # IConfigurable
    def configure(self, ckan_config: Any) -> None:
        config.check_consistency()

    # IValidators
    def get_validators(self) -> dict[str, Any]:
        return {name: getattr(validators, name)
                for name in validators.__all__}
