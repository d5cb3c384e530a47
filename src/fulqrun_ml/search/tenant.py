"""Similar-deal search as one organisation sees it: the question and every answer must be that organisation's.

Why a wrapper: `SimilarDealSearch` already filters candidates to the asked deal's organisation, but it trusts
the deal id to say which organisation is asking. Here the caller's organisation is given separately and checked
against the CRM's own `organization_id` of the deal (data/tenancy.py): another organisation's deal id is refused
exactly like an unknown one. Each returned deal is checked again (defence in depth: a broken filter in the
index raises instead of leaking).
"""

from __future__ import annotations

import pandas as pd

from fulqrun_ml.data.tenancy import TenantAccessError, check_org, owners, require_owned
from fulqrun_ml.search.similar import SimilarDealsAnswer, SimilarDealSearch


class TenantSimilarDeals:
    """`similar(...)` for one organisation over a shared `SimilarDealSearch`."""

    def __init__(self, search: SimilarDealSearch, organization_id: str) -> None:
        self.search = search
        self.organization_id = check_org(organization_id)
        self._owner = owners(search.tables, "opportunity").to_dict()

    def similar(
        self,
        opportunity_id: str,
        as_of: pd.Timestamp | str | None = None,
        k: int = 5,
        outcome: str = "won",
        same_segment: bool = False,
    ) -> SimilarDealsAnswer:
        require_owned(self.organization_id, [opportunity_id], self._owner, "opportunity")
        answer = self.search.similar(opportunity_id, as_of, k, outcome, same_segment)
        for deal in answer.similar:
            if self._owner.get(deal.opportunity_id) != self.organization_id:
                raise TenantAccessError(
                    f"similar-deal search returned a deal outside organisation '{self.organization_id}': refused"
                )
        return answer
