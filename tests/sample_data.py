"""A small, fixed CRM that uses only baseline columns, so it loads at ``0002_crm_baseline``
and every later revision must carry it through upgrade and downgrade unchanged."""

from __future__ import annotations

import uuid

from sqlalchemy import Connection, text

ADMIN = uuid.UUID("00000000-0000-4000-8000-000000000001")
MANAGER = uuid.UUID("00000000-0000-4000-8000-000000000002")
AGENT_A = uuid.UUID("00000000-0000-4000-8000-00000000000a")
AGENT_B = uuid.UUID("00000000-0000-4000-8000-00000000000b")
ADMIN_EMAIL = "stokes@cakeoklahoma.com"

DISPENSARY_A = uuid.UUID("10000000-0000-4000-8000-00000000000a")
DISPENSARY_B = uuid.UUID("10000000-0000-4000-8000-00000000000b")
DISPENSARY_UNASSIGNED = uuid.UUID("10000000-0000-4000-8000-0000000000ff")
PRODUCT_FLOWER = uuid.UUID("20000000-0000-4000-8000-000000000001")
PRODUCT_VAPE = uuid.UUID("20000000-0000-4000-8000-000000000002")
ORDER_A = uuid.UUID("30000000-0000-4000-8000-00000000000a")
ORDER_B = uuid.UUID("30000000-0000-4000-8000-00000000000b")

USERS = [
    (ADMIN, ADMIN_EMAIL, "Stokes", "admin"),
    (MANAGER, "manager@cakeoklahoma.com", "Morgan Manager", "manager"),
    (AGENT_A, "agent.a@cakeoklahoma.com", "Avery Agent", "agent"),
    (AGENT_B, "agent.b@cakeoklahoma.com", "Blake Agent", "agent"),
]

SQL = """
INSERT INTO public.dispensary_profiles
    (id, name, license_number, status, city, county, assigned_agent_id)
VALUES
    (:disp_a, 'Red Dirt Remedies', 'DAAA-RDR1-0001', 'active', 'Tulsa', 'Tulsa', :agent_a),
    (:disp_b, 'Prairie Leaf Co.', 'DAAA-PLC2-0002', 'active', 'Norman', 'Cleveland', :agent_b),
    (:disp_u, 'Route 66 Cannabis', 'DAAA-R66C-0003', 'prospect', 'Edmond', 'Oklahoma', NULL);

INSERT INTO public.products
    (id, name, sku, category, strain_type, thc_percent, unit_size, unit_price)
VALUES
    (:flower, 'Okie Kush 3.5g', 'OK-FL-001', 'flower', 'indica', 24.50, '3.5g', 22.00),
    (:vape, 'Sooner Sativa Cart', 'OK-VP-002', 'vape', 'sativa', 85.10, '1g cart', 28.50);

INSERT INTO public.orders (id, dispensary_id, agent_id, status, order_date, total_amount)
VALUES
    (:order_a, :disp_a, :agent_a, 'confirmed', DATE '2026-10-01', 505.00),
    (:order_b, :disp_b, :agent_b, 'draft', DATE '2026-11-02', 57.00);

INSERT INTO public.order_items (order_id, product_id, quantity, unit_price)
VALUES
    (:order_a, :flower, 10, 22.00),
    (:order_a, :vape, 10, 28.50),
    (:order_b, :vape, 2, 28.50);

INSERT INTO public.communications (dispensary_id, agent_id, type, subject)
VALUES
    (:disp_a, :agent_a, 'site_visit', 'Quarterly walkthrough'),
    (:disp_b, :agent_b, 'call', 'Reorder check-in');

INSERT INTO public.tasks (title, assigned_to, created_by, dispensary_id, priority, due_date)
VALUES
    ('Send vape menu', :agent_a, :manager, :disp_a, 'high', DATE '2026-12-01'),
    ('Licence renewal reminder', :agent_b, :agent_b, :disp_b, 'medium', DATE '2026-12-15');
"""


def load(connection: Connection) -> None:
    """Insert the sample CRM (as the table owner, so RLS does not apply)."""
    for user_id, email, name, role in USERS:
        # The e-mail comes after the profile: from 0006 on, an auth.users row with an e-mail
        # gets a profile of its own (an agent's), and these are made with their role.
        connection.execute(text("INSERT INTO auth.users (id) VALUES (:id)"), {"id": user_id})
        connection.execute(
            text(
                "INSERT INTO public.profiles (id, email, full_name, role) "
                "VALUES (:id, :email, :name, CAST(:role AS public.user_role))"
            ),
            {"id": user_id, "email": email, "name": name, "role": role},
        )
        connection.execute(
            text("UPDATE auth.users SET email = :email WHERE id = :id"),
            {"id": user_id, "email": email},
        )
    params = {
        "disp_a": DISPENSARY_A,
        "disp_b": DISPENSARY_B,
        "disp_u": DISPENSARY_UNASSIGNED,
        "agent_a": AGENT_A,
        "agent_b": AGENT_B,
        "manager": MANAGER,
        "flower": PRODUCT_FLOWER,
        "vape": PRODUCT_VAPE,
        "order_a": ORDER_A,
        "order_b": ORDER_B,
    }
    for statement in SQL.split(";"):
        if statement.strip():
            connection.execute(text(statement), params)
