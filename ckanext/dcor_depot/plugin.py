"""CKAN plugin wiring: every hook delegates to a module that does the work."""
from __future__ import annotations

from typing import Any

import ckan.plugins as plugins
import ckan.plugins.toolkit as tk

from ckanext.dcor_depot import (
    cli,
    config,
    helpers,
    uploader,
    validators,
    views,
)
from ckanext.dcor_depot.logic import action, auth, transactions
from ckanext.dcor_depot.operations import jobs


@tk.blanket.config_declarations
class DCORDepotPlugin(plugins.SingletonPlugin):
    plugins.implements(plugins.IConfigurable, inherit=True)
    plugins.implements(plugins.IConfigurer, inherit=True)
    plugins.implements(plugins.ITemplateHelpers)
    plugins.implements(plugins.IValidators)
    plugins.implements(plugins.IActions)
    plugins.implements(plugins.IAuthFunctions)
    plugins.implements(plugins.IClick)
    plugins.implements(plugins.IUploader, inherit=True)
    plugins.implements(plugins.IBlueprint)
    plugins.implements(plugins.IForkObserver)

    # IConfigurable
    def configure(self, ckan_config: Any) -> None:
        config.check_consistency()
        transactions.install()

    # IConfigurer: the resource form's direct uploads, the operator page's
    # tab in the admin area and the resource page's storage box
    def update_config(self, ckan_config: Any) -> None:
        tk.add_template_directory(ckan_config, "templates")
        tk.add_resource("assets", "dcor_depot")

    # ITemplateHelpers
    def get_helpers(self) -> dict[str, Any]:
        return helpers.get_helpers()

    # IValidators
    def get_validators(self) -> dict[str, Any]:
        return {name: getattr(validators, name)
                for name in validators.__all__}

    # IActions
    def get_actions(self) -> dict[str, Any]:
        return action.get_actions()

    # IAuthFunctions
    def get_auth_functions(self) -> dict[str, Any]:
        return auth.get_auth_functions()

    # IClick
    def get_commands(self) -> list[Any]:
        return cli.get_commands()

    # IUploader
    def get_uploader(self, upload_to: str, old_filename: Any = None) -> None:
        return None  # CKAN's own uploader for everything but resources

    def get_resource_uploader(self, data_dict: dict[str, Any]) -> Any:
        return uploader.get_resource_uploader(data_dict)

    # IBlueprint
    def get_blueprint(self) -> list[Any]:
        return views.get_blueprints()

    # IForkObserver: a worker is about to fork for its next job
    def before_fork(self) -> None:
        jobs.before_worker_fork()
