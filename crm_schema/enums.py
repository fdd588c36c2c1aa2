"""Python mirrors of the PostgreSQL enum types.

Each member's value is the label in the database; a test checks both sides list the same
labels in the same order, so a new label added by a migration must be added here too.
"""

from __future__ import annotations

from enum import StrEnum


class UserRole(StrEnum):
    ADMIN = "admin"
    MANAGER = "manager"
    AGENT = "agent"


class LicenseStatus(StrEnum):
    """An OMMA licence's state, as the state's licence lookup reports it."""

    ACTIVE = "active"
    PENDING = "pending"
    EXPIRED = "expired"
    SUSPENDED = "suspended"
    REVOKED = "revoked"


class DispensaryStatus(StrEnum):
    """Where a dispensary stands in the sales pipeline."""

    PROSPECT = "prospect"
    ACTIVE = "active"
    INACTIVE = "inactive"
    CLOSED = "closed"


class ProductCategory(StrEnum):
    FLOWER = "flower"
    PRE_ROLL = "pre_roll"
    VAPE = "vape"
    CONCENTRATE = "concentrate"
    EDIBLE = "edible"
    BEVERAGE = "beverage"
    TOPICAL = "topical"
    TINCTURE = "tincture"
    CAPSULE = "capsule"
    ACCESSORY = "accessory"


class StrainType(StrEnum):
    INDICA = "indica"
    SATIVA = "sativa"
    HYBRID = "hybrid"
    CBD = "cbd"


class OrderStatus(StrEnum):
    DRAFT = "draft"
    SUBMITTED = "submitted"
    CONFIRMED = "confirmed"
    SHIPPED = "shipped"
    DELIVERED = "delivered"
    CANCELLED = "cancelled"


class CommunicationType(StrEnum):
    CALL = "call"
    EMAIL = "email"
    TEXT = "text"
    MEETING = "meeting"
    SITE_VISIT = "site_visit"
    NOTE = "note"


class TaskStatus(StrEnum):
    PENDING = "pending"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    CANCELLED = "cancelled"


class TaskPriority(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    URGENT = "urgent"


class PermissionType(StrEnum):
    """An action on a resource. ``manage`` implies every other action on that resource."""

    READ = "read"
    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"
    EXPORT = "export"
    MANAGE = "manage"


class ResourceType(StrEnum):
    """What a permission or an activity is about."""

    PROFILE = "profile"
    DISPENSARY = "dispensary"
    PRODUCT = "product"
    ORDER = "order"
    COMMUNICATION = "communication"
    TASK = "task"
    PERMISSION = "permission"
    ACTIVITY_LOG = "activity_log"
    CHANGE_LOG = "change_log"
    REPORT = "report"
    SYSTEM = "system"


class ActivityType(StrEnum):
    LOGIN = "login"
    LOGOUT = "logout"
    LOGIN_FAILED = "login_failed"
    PASSWORD_RESET = "password_reset"
    VIEW = "view"
    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"
    SOFT_DELETE = "soft_delete"
    RESTORE = "restore"
    EXPORT = "export"
    PERMISSION_GRANTED = "permission_granted"
    PERMISSION_REVOKED = "permission_revoked"
    ROLE_CHANGED = "role_changed"
    REPORT_RUN = "report_run"
    SYSTEM = "system"


class ChangeOperation(StrEnum):
    """What a change-log row records."""

    INSERT = "insert"
    UPDATE = "update"
    DELETE = "delete"
    SOFT_DELETE = "soft_delete"
    RESTORE = "restore"


# PostgreSQL type name -> Python enum, for the models and the mirror test.
PG_ENUMS: dict[str, type[StrEnum]] = {
    "user_role": UserRole,
    "license_status": LicenseStatus,
    "dispensary_status": DispensaryStatus,
    "product_category": ProductCategory,
    "strain_type": StrainType,
    "order_status": OrderStatus,
    "communication_type": CommunicationType,
    "task_status": TaskStatus,
    "task_priority": TaskPriority,
    "permission_type": PermissionType,
    "resource_type": ResourceType,
    "activity_type": ActivityType,
    "change_operation": ChangeOperation,
}
