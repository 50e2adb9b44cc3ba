"""Shared helpers for TMF API tests: an org tree, API clients with bearer tokens, and a
TestClient on the real app.

    def test_x(tmf):                      # fixture from tests/conftest.py
        headers = tmf.bearer("GZ", "customers.read")
        answer = tmf.client.get("/tmf-api/customerManagement/v4/customer", headers=headers)

``tmf.orgs`` maps codes to org units: TS (operator) → GD (province) → GZ, SZ (cities) →
GZTH (hall under GZ). A token for ``GZ`` sees GZ and GZTH records, never SZ's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fastapi.testclient import TestClient

from teleserve.iam import service as iam
from teleserve.iam.schemas import OrgLevel, OrgUnitOut, OrgUnitSpec

ORG_SPECS = (
    OrgUnitSpec(code="TS", name_zh="电信运营商", name_en="Operator", level=OrgLevel.operator),
    OrgUnitSpec(code="GD", name_zh="广东", name_en="Guangdong", level="province", parent_code="TS"),
    OrgUnitSpec(code="GZ", name_zh="广州", name_en="Guangzhou", level="city", parent_code="GD"),
    OrgUnitSpec(code="SZ", name_zh="深圳", name_en="Shenzhen", level="city", parent_code="GD"),
    OrgUnitSpec(
        code="GZTH", name_zh="天河营业厅", name_en="Tianhe hall", level="hall", parent_code="GZ"
    ),
)


@dataclass
class TmfHarness:
    client: TestClient
    make_uow: Callable[..., Any]
    orgs: dict[str, OrgUnitOut] = field(default_factory=dict)

    def bearer(self, org_code: str, *scopes: str) -> dict[str, str]:
        """Authorization headers of a fresh API client at ``org_code`` holding ``scopes``."""
        with self.make_uow() as uow:
            created = iam.create_api_client(
                uow, f"test client {org_code}", self.orgs[org_code].id, list(scopes)
            )
            uow.commit()
        with self.make_uow() as uow:
            issued = iam.issue_token(uow, created.client.client_id, created.secret)
            uow.commit()
        return {"Authorization": f"Bearer {issued.access_token}"}


def build_harness(make_uow: Callable[..., Any], client: TestClient) -> TmfHarness:
    with make_uow() as uow:
        units = iam.create_org_units_batch(uow, list(ORG_SPECS))
        uow.commit()
    return TmfHarness(client, make_uow, {u.code: u for u in units})
