"""The web console: server-rendered pages under /console over the same bundles.

``console_handlers`` goes into the app's route_handlers and
``console_template_config`` into its template_config (api/app.py). A page
module adds its Controller (paths relative to /console) to ``CONTROLLERS``;
the router gives every one the ``user`` dependency (api.console.session),
the CSRF check on every POST and HTML error pages.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from litestar import Router
from litestar.di import Provide
from litestar.exceptions import HTTPException, ValidationException
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.plugins.problem_details import ProblemDetailsException
from litestar.static_files import create_static_files_router
from litestar.template import TemplateConfig

from api.console.budget import BudgetPages
from api.console.catalog import DatasetPages
from api.console.dataset_forms import DatasetFormPages
from api.console.dr import DrPages
from api.console.export_form import ExportFormPages
from api.console.exports import ExportPages, presets_page
from api.console.session import (
    SignInRequiredError,
    check_csrf,
    console_user,
    error_page,
    to_sign_in,
)
from api.console.signin import console_home, sign_in, sign_in_page, sign_out
from domain.errors import DomainError

HERE = Path(__file__).parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"

CONTROLLERS: list[Any] = [
    DatasetPages,
    DatasetFormPages,
    ExportPages,
    ExportFormPages,
    presets_page,
    DrPages,
    BudgetPages,
]
"""The console's page controllers (each path relative to /console)."""


def _environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals["CSRF_FIELD"] = "csrf_token"
    return env


console_template_config = TemplateConfig(
    instance=JinjaTemplateEngine.from_environment(_environment())
)

console_router = Router(
    path="/console",
    route_handlers=[sign_in_page, sign_in, sign_out, console_home, *CONTROLLERS],
    dependencies={"user": Provide(console_user)},
    before_request=check_csrf,
    exception_handlers={  # over the app's problem+json: pages answer in HTML
        SignInRequiredError: to_sign_in,
        HTTPException: error_page,
        ProblemDetailsException: error_page,
        ValidationException: error_page,
        DomainError: error_page,
    },
    include_in_schema=False,
)

console_static = create_static_files_router(
    path="/console/static",
    directories=[STATIC],
    include_in_schema=False,
    cache_control=None,
    name="console-static",
)

console_handlers: list[Any] = [console_router, console_static]
"""Everything the console serves: api/app.py adds these to its routes."""

SWAGGER_ASSETS = "/console/static/vendor/swagger-ui"
"""The vendored swagger-ui-dist the /schema page loads (no CDN)."""


def swagger_plugin() -> SwaggerRenderPlugin:
    """/schema's Swagger UI from the vendored copy (it renders offline)."""
    return SwaggerRenderPlugin(
        js_url=f"{SWAGGER_ASSETS}/swagger-ui-bundle.js",
        css_url=f"{SWAGGER_ASSETS}/swagger-ui.css",
        standalone_preset_js_url=f"{SWAGGER_ASSETS}/swagger-ui-standalone-preset.js",
        favicon=f"<link rel='icon' href='{SWAGGER_ASSETS}/favicon-32x32.png'>",
    )
