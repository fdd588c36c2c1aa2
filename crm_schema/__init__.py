"""crm-schema: the PostgreSQL/Supabase schema of a cannabis-industry CRM.

Import the models from :mod:`crm_schema.models`, the enums from :mod:`crm_schema.enums`, and
run the migrations with :func:`crm_schema.migrations.upgrade` or the ``crm-schema`` command.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("crm-schema")
except PackageNotFoundError:  # pragma: no cover - running from a bare checkout
    __version__ = "0.0.0"

__all__ = ["__version__"]
