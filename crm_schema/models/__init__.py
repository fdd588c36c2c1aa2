"""Typed SQLAlchemy 2.0 models of the schema at ``head``.

Migrations never import these (they are frozen history); a test proves the models and the
migrated schema agree.
"""

from crm_schema.models.activity import UserActivityLog
from crm_schema.models.auth import auth_users
from crm_schema.models.base import NAMING_CONVENTION, Base, include_name, include_object, metadata
from crm_schema.models.change_log import ChangeLog
from crm_schema.models.communications import Communication
from crm_schema.models.dispensaries import DispensaryProfile
from crm_schema.models.migration_log import MigrationLog
from crm_schema.models.orders import Order, OrderItem
from crm_schema.models.permissions import RolePermission, UserPermission
from crm_schema.models.products import Product
from crm_schema.models.profiles import Profile
from crm_schema.models.soft_delete import INCLUDE_DELETED, restore, soft_delete
from crm_schema.models.tasks import Task
from crm_schema.models.views import (
    VIEW_MODELS,
    ActiveProfile,
    DispensarySummary,
    ReadOnlyView,
    RecentActivity,
    RecordChangeHistory,
    UserEffectivePermission,
    View,
    view_metadata,
)

__all__ = [
    "INCLUDE_DELETED",
    "NAMING_CONVENTION",
    "VIEW_MODELS",
    "ActiveProfile",
    "Base",
    "ChangeLog",
    "Communication",
    "DispensaryProfile",
    "DispensarySummary",
    "MigrationLog",
    "Order",
    "OrderItem",
    "Product",
    "Profile",
    "ReadOnlyView",
    "RecentActivity",
    "RecordChangeHistory",
    "RolePermission",
    "Task",
    "UserActivityLog",
    "UserEffectivePermission",
    "UserPermission",
    "View",
    "auth_users",
    "include_name",
    "include_object",
    "metadata",
    "restore",
    "soft_delete",
    "view_metadata",
]
