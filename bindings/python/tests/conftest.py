"""Fixtures of the Python binding tests: the same real stack as the
integration suite (tests/conftest.py: PostgreSQL shaped like Supabase's
database + an OpenBao dev server, bootstrapped), reused rather than copied.

pytest scopes a conftest's fixtures to its directory, so the fixtures of
tests/conftest.py are loaded here under a module name of their own and
re-exported. Run together with tests/ (``pytest tests bindings/python/tests``)
each directory gets its own session stack per PostgreSQL version; the names
are the same, the instances are not shared.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[3]
_NAME = "_supabase_connector_suite_conftest"


def _suite() -> ModuleType:
    module = sys.modules.get(_NAME)
    if module is None:
        spec = importlib.util.spec_from_file_location(_NAME, ROOT / "tests" / "conftest.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[_NAME] = module
        spec.loader.exec_module(module)
    return module


_s = _suite()

# Everything tests/conftest.py defines, fixtures and helpers alike. pytest
# imports every conftest.py as the module `conftest`, and the suite's test
# modules do `from conftest import ...`: whichever of the two files pytest
# imported last, those imports must find the same names.
globals().update({k: v for k, v in vars(_s).items() if not k.startswith(("__", "pytest_"))})

# named here for readers (and linters): the fixtures and helpers used in this directory
stack = _s.stack
executor = _s.executor
admin = _s.admin
jwt_secret = _s.jwt_secret
api = _s.api
slug = _s.slug
project = _s.project
Admin = _s.Admin
cli = _s.cli
connector_config = _s.connector_config
info = _s.info
new_slug = _s.new_slug
