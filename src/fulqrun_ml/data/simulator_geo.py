"""Geography, capacity and rep skills on top of a simulated CRM, with the truth that scores an assignment.

Why a separate module: `simulate_crm`'s tables and latent truth are pinned by fingerprints and data hashes,
and the contract has no coordinates. Territory and assignment work needs them, so this module draws them
*from* a simulated CRM with its own generator (`default_rng([seed, 4])`) and never changes the CRM:

1. **Account locations.** Each company sits near a metro of its country (`METROS`; metro sizes are drawn
   from a Dirichlet, so some metros are much busier than others): 85 % within N(0, 0.35°) of the metro,
   15 % spread N(0, 2.5°) around it (rural accounts). Region follows the country (`simulator.COUNTRIES`),
   the grid cell is `floor(lat / cell) , floor(lon / cell)` with `cell_degrees` (0.5° by default).
2. **Reps.** A home base near a metro drawn in proportion to the metro's accounts (the rep's `region` is the
   home metro's; `users.region` in `simulate_crm` is a manager grouping drawn without geography), a capacity in selling
   hours per year (the simulated touch effort of the whole book, times `CAPACITY_SLACK`, split over the reps
   with lognormal(0, 0.15) spread), a travel cost per km (0.5 $ x U(0.7, 1.3)) and two declared industry
   skills (the industries where the rep's true effect is largest).
3. **True rep x segment skill.** effect[rep, industry] ~ N(0, `SKILL_SD`) on the win log-odds, on top of the
   rep's global skill already in `simulate_crm` (0.6 skill). The CRM's closed deals are re-drawn with it
   (`deal_outcomes`): a monotone coupling keeps every deal whose odds the effect does not move as it was, so
   the history the optimiser learns from carries the effect it should find.
4. **The current book.** Every account is owned by the nearest rep of its region (any rep where the
   region has none): the status quo that territory design rebalances and assignment improves on.
5. **Ground truth of an assignment** (`true_revenue_matrix`): expected revenue per year of account a worked
   by rep r = deals per account-year x E_z,v[v sigmoid(c_a + 0.6 skill_r + effect[r, industry_a] + 1.3 z
   - 0.25 log(v / 50k))] with z ~ N(0, 1), v ~ lognormal(log 40k, 0.9) and c_a = -0.4 + industry + size
   effects of the company's original record, exactly the story of `simulate_crm` step 3.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from fulqrun_ml.data.simulator import COUNTRIES, INDUSTRY_EFFECT, SIZE_EFFECT, SimulatedCRM

METROS: dict[str, tuple[tuple[str, float, float], ...]] = {
    "US": (("New York", 40.71, -74.01), ("Chicago", 41.88, -87.63), ("San Francisco", 37.77, -122.42),
           ("Austin", 30.27, -97.74), ("Atlanta", 33.75, -84.39)),
    "CA": (("Toronto", 43.65, -79.38), ("Vancouver", 49.28, -123.12)),
    "GB": (("London", 51.51, -0.13), ("Manchester", 53.48, -2.24)),
    "DE": (("Berlin", 52.52, 13.40), ("Munich", 48.14, 11.58)),
    "FR": (("Paris", 48.86, 2.35), ("Lyon", 45.76, 4.84)),
    "AU": (("Sydney", -33.87, 151.21), ("Melbourne", -37.81, 144.96)),
    "JP": (("Tokyo", 35.68, 139.69), ("Osaka", 34.69, 135.50)),
    "SG": (("Singapore", 1.35, 103.82),),
    "BR": (("Sao Paulo", -23.55, -46.63), ("Rio de Janeiro", -22.91, -43.17)),
    "MX": (("Mexico City", 19.43, -99.13), ("Monterrey", 25.69, -100.32)),
}  # fmt: skip
REGION_OF_COUNTRY = {country: region for region, countries in COUNTRIES.items() for country in countries}
SKILL_SD = 0.6
CAPACITY_SLACK = 1.3
# Minutes of rep effort per touch, the simulator's own truth about workload (optimize configs default to it).
ACTIVITY_MINUTES = {"call": 15.0, "email": 5.0, "meeting": 60.0, "task": 10.0, "note": 5.0}
EARTH_RADIUS_KM = 6371.0


@dataclass(frozen=True)
class GeoWorld:
    """Locations, rep profiles and the skill truth for one simulated CRM (evaluation reads the truth only)."""

    accounts: pd.DataFrame  # company_id, latitude, longitude, region, metro, industry, size, grid_cell, current_rep
    reps: pd.DataFrame  # rep_id, region, home_latitude, home_longitude, capacity_hours, travel_cost_per_km, skills
    skill_effect: pd.DataFrame  # rep_id x industry -> true log-odds effect (the truth; never a feature)
    deal_outcomes: pd.DataFrame  # opportunity_id, company_id, rep_id, value, won, closed_at (history with skill)
    base_logit: pd.Series  # company_id -> -0.4 + industry + size effect of the original record (truth)
    rep_skill: pd.Series  # rep_id -> 0.6 x global skill, recovered exactly from the latent table (truth)
    deals_per_account_year: float  # the story's deal arrival rate per account (truth)


def haversine_km(lat1: np.ndarray, lon1: np.ndarray, lat2: np.ndarray, lon2: np.ndarray) -> np.ndarray:
    """Great-circle distance in km (broadcasts), the travel distance everywhere in optimisation."""
    lat1, lon1, lat2, lon2 = (np.radians(np.asarray(x, dtype=float)) for x in (lat1, lon1, lat2, lon2))
    a = np.sin((lat2 - lat1) / 2) ** 2 + np.cos(lat1) * np.cos(lat2) * np.sin((lon2 - lon1) / 2) ** 2
    return 2 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))


def grid_cells(latitude: np.ndarray, longitude: np.ndarray, cell_degrees: float) -> np.ndarray:
    """`"<row>_<col>"` of a regular lat/lon grid: the unit territories are built from at scale."""
    rows = np.floor(np.asarray(latitude, dtype=float) / cell_degrees).astype(int)
    cols = np.floor(np.asarray(longitude, dtype=float) / cell_degrees).astype(int)
    return np.char.add(np.char.add(rows.astype(str), "_"), cols.astype(str)).astype(object)


def _metro_table(rng: np.random.Generator) -> pd.DataFrame:
    rows = []
    for country, metros in METROS.items():
        weights = rng.dirichlet(np.full(len(metros), 0.8))
        for (name, lat, lon), weight in zip(metros, weights, strict=True):
            rows.append((country, REGION_OF_COUNTRY[country], name, lat, lon, weight))
    return pd.DataFrame(rows, columns=["country", "region", "metro", "latitude", "longitude", "weight"])


def _place_accounts(companies: pd.DataFrame, metros: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    n = len(companies)
    countries = companies["country"].to_numpy()
    metro_idx = np.empty(n, dtype=int)
    for country, rows in metros.groupby("country").groups.items():
        mask = countries == country
        weights = metros.loc[rows, "weight"].to_numpy()
        metro_idx[mask] = rng.choice(np.asarray(rows), size=int(mask.sum()), p=weights / weights.sum())
    rural = rng.uniform(size=n) < 0.15
    spread = np.where(rural, 2.5, 0.35)[:, None] * rng.normal(size=(n, 2))
    lat = np.clip(metros["latitude"].to_numpy()[metro_idx] + spread[:, 0], -85.0, 85.0)
    lon = (metros["longitude"].to_numpy()[metro_idx] + spread[:, 1] + 180.0) % 360.0 - 180.0
    return pd.DataFrame(
        {
            "company_id": companies["id"].to_numpy(),
            "latitude": np.round(lat, 5),
            "longitude": np.round(lon, 5),
            "region": [REGION_OF_COUNTRY[c] for c in countries],
            "metro": metros["metro"].to_numpy()[metro_idx],
            "industry": companies["industry"].to_numpy(),
            "size": companies["size"].to_numpy(),
        }
    )


def _original_records(crm: SimulatedCRM) -> pd.DataFrame:
    """industry and size as first drawn (the story's win odds read these, not today's row)."""
    history = crm.tables.company_history
    if len(history):
        first = history.sort_values("valid_from", kind="stable").groupby("company_id", sort=False).head(1)
        return first.set_index("company_id")[["industry", "size"]]
    return crm.tables.companies.set_index("id")[["industry", "size"]]


def _rep_skill(crm: SimulatedCRM, original: pd.DataFrame) -> pd.Series:
    """0.6 x skill per rep, solved back from each deal's true probability (exact: no drift, no noise)."""
    opps = crm.tables.opportunities.merge(crm.latent, left_on="id", right_on="opportunity_id")
    p = opps["true_win_probability"].to_numpy()
    record = original.reindex(opps["company_id"])
    residual = (
        np.log(p / (1 - p))
        + 0.4
        - 1.3 * opps["latent_quality"].to_numpy()
        - record["industry"].map(INDUSTRY_EFFECT).to_numpy()
        - record["size"].map(SIZE_EFFECT).to_numpy()
        + 0.25 * np.log(opps["value"].to_numpy() / 50_000)
    )
    return pd.Series(residual, index=opps["assigned_to"].to_numpy()).groupby(level=0).mean()


def _redraw_outcomes(crm: SimulatedCRM, effect: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """Closed deals' outcomes under the story plus the rep x industry effect, coupled to the original draw."""
    opps = crm.tables.opportunities
    closed = opps[opps["stage"].isin(["closed_won", "closed_lost"])]
    latent = crm.latent.set_index("opportunity_id").reindex(closed["id"])
    p = latent["true_win_probability"].to_numpy()
    won = latent["won"].to_numpy(dtype=bool)
    industry = crm.tables.companies.set_index("id")["industry"].reindex(closed["company_id"]).to_numpy()
    shift = effect.stack().reindex(pd.MultiIndex.from_arrays([closed["assigned_to"].to_numpy(), industry]))
    logit = np.log(p / (1 - p)) + shift.fillna(0.0).to_numpy()
    u = np.where(won, rng.uniform(size=len(p)) * p, p + rng.uniform(size=len(p)) * (1 - p))
    return pd.DataFrame(
        {
            "opportunity_id": closed["id"].to_numpy(),
            "company_id": closed["company_id"].to_numpy(),
            "rep_id": closed["assigned_to"].to_numpy(),
            "value": closed["value"].to_numpy(dtype=float),
            "won": u < 1.0 / (1.0 + np.exp(-logit)),
            "closed_at": closed["close_date"].to_numpy(),
        }
    )


def _touch_hours(crm: SimulatedCRM) -> float:
    """Hours of rep effort per year that the simulated touches represent (sizes the capacities)."""
    acts = crm.tables.activities
    days = max((crm.tables.extracted_at - crm.tables.organizations["created_at"].min()).days, 1)
    minutes = acts["type"].map(ACTIVITY_MINUTES).fillna(0.0).sum()
    return float(minutes / 60.0 * 365.0 / days)


def _current_owner(accounts: pd.DataFrame, reps: pd.DataFrame) -> np.ndarray:
    dist = haversine_km(
        accounts["latitude"].to_numpy()[:, None],
        accounts["longitude"].to_numpy()[:, None],
        reps["home_latitude"].to_numpy()[None, :],
        reps["home_longitude"].to_numpy()[None, :],
    )
    other_region = accounts["region"].to_numpy()[:, None] != reps["region"].to_numpy()[None, :]
    has_local = (~other_region).any(axis=1, keepdims=True)
    dist = dist + np.where(other_region & has_local, 1e6, 0.0)
    return reps["rep_id"].to_numpy()[dist.argmin(axis=1)]


def simulate_geography(crm: SimulatedCRM, seed: int = 0, cell_degrees: float = 0.5) -> GeoWorld:
    """Draw locations, rep profiles and skill truth for `crm` (deterministic per seed; the CRM is untouched)."""
    if cell_degrees <= 0:
        raise ValueError(f"cell_degrees must be positive, got {cell_degrees}")
    rng = np.random.default_rng([seed, 4])
    tables = crm.tables
    metros = _metro_table(rng)
    accounts = _place_accounts(tables.companies, metros, rng)
    accounts["grid_cell"] = grid_cells(accounts["latitude"], accounts["longitude"], cell_degrees)

    users = tables.users[tables.users["role"] == "rep"].reset_index(drop=True)
    n_reps = len(users)
    industries = list(INDUSTRY_EFFECT)
    effect = pd.DataFrame(
        rng.normal(0.0, SKILL_SD, size=(n_reps, len(industries))), index=users["id"].to_numpy(), columns=industries
    )
    # Reps live where the accounts are: a home metro drawn in proportion to the metro's accounts.
    per_metro = accounts["metro"].value_counts().reindex(metros["metro"], fill_value=0).to_numpy(dtype=float)
    home_metro = rng.choice(len(metros), size=n_reps, p=per_metro / per_metro.sum())
    capacity = _touch_hours(crm) * CAPACITY_SLACK / max(n_reps, 1) * rng.lognormal(0.0, 0.15, size=n_reps)
    top_two = np.argsort(-effect.to_numpy(), axis=1)[:, :2]
    reps = pd.DataFrame(
        {
            "rep_id": users["id"].to_numpy(),
            "region": metros["region"].to_numpy()[home_metro],
            "home_latitude": np.round(metros["latitude"].to_numpy()[home_metro] + rng.normal(0, 0.1, n_reps), 5),
            "home_longitude": np.round(metros["longitude"].to_numpy()[home_metro] + rng.normal(0, 0.1, n_reps), 5),
            "capacity_hours": np.round(capacity, 1),
            "travel_cost_per_km": np.round(0.5 * rng.uniform(0.7, 1.3, size=n_reps), 3),
            "skills": [",".join(industries[j] for j in row) for row in top_two],
        }
    )
    accounts["current_rep"] = _current_owner(accounts, reps)
    original = _original_records(crm)
    base = -0.4 + original["industry"].map(INDUSTRY_EFFECT) + original["size"].map(SIZE_EFFECT)
    days = max((tables.extracted_at - tables.organizations["created_at"].min()).days - 20, 1)
    return GeoWorld(
        accounts=accounts,
        reps=reps,
        skill_effect=effect,
        deal_outcomes=_redraw_outcomes(crm, effect, rng),
        base_logit=base.reindex(accounts["company_id"]).astype(float),
        rep_skill=_rep_skill(crm, original).reindex(reps["rep_id"]).fillna(0.0),
        deals_per_account_year=len(tables.opportunities) / max(len(tables.companies), 1) * 365.0 / days,
    )


def _revenue_per_deal_curve() -> tuple[np.ndarray, np.ndarray]:
    """E_z,v[v sigmoid(c + 1.3 z - 0.25 log(v/50k))] on a grid of c (Gauss-Hermite in z and log v)."""
    nodes, weights = np.polynomial.hermite_e.hermegauss(40)
    weights = weights / weights.sum()
    log_v = np.log(40_000) + 0.9 * nodes
    c = np.linspace(-8.0, 8.0, 1601)
    logit = c[:, None, None] + 1.3 * nodes[None, :, None] - 0.25 * (log_v[None, None, :] - np.log(50_000))
    value = np.exp(log_v)[None, None, :] / (1.0 + np.exp(-logit))
    return c, np.einsum("czv,z,v->c", value, weights, weights)


_CURVE = _revenue_per_deal_curve()


def true_revenue_matrix(world: GeoWorld, company_ids: pd.Series | np.ndarray | None = None) -> np.ndarray:
    """[reps x accounts] true expected revenue per year under the simulator's story (evaluation only)."""
    ids = world.accounts["company_id"] if company_ids is None else pd.Series(company_ids)
    base = world.base_logit.reindex(ids).to_numpy()
    industry = world.accounts.set_index("company_id")["industry"].reindex(ids).to_numpy()
    effect = world.skill_effect.reindex(columns=pd.unique(industry)).to_numpy()
    columns = pd.Index(pd.unique(industry)).get_indexer(industry)
    c = base[None, :] + world.rep_skill.to_numpy()[:, None] + effect[:, columns]
    return world.deals_per_account_year * np.interp(c, *_CURVE)


def true_revenue(world: GeoWorld, company_ids: np.ndarray, rep_ids: np.ndarray) -> float:
    """True expected revenue per year of a book: account company_ids[i] worked by rep rep_ids[i]."""
    matrix = true_revenue_matrix(world, company_ids)
    rows = pd.Index(world.reps["rep_id"]).get_indexer(rep_ids)
    if (rows < 0).any():
        raise ValueError("rep_ids: an assigned rep is not one of the world's reps")
    return float(matrix[rows, np.arange(len(rows))].sum())


# Visiting hours (open, close, share of accounts): office hours, mornings only, afternoons only.
VISITING_HOURS = ((9.0, 17.0, 0.6), (8.0, 12.0, 0.2), (13.0, 18.0, 0.2))


def visiting_hours(world: GeoWorld, seed: int = 0) -> pd.DataFrame:
    """company_id, open_hour, close_hour per account: when a visit may take place (routes read it).

    Drawn with its own generator (`default_rng([seed, 6])`; 4 is simulate_geography's, 5 simulator_pricing's),
    after and apart from `simulate_geography`, so every earlier output of this module is unchanged: 60 % office
    hours 9-17, 20 % mornings 8-12, 20 % afternoons 13-18 (docs/simulator.md)."""
    rng = np.random.default_rng([seed, 6])
    kind = rng.choice(len(VISITING_HOURS), size=len(world.accounts), p=[share for *_, share in VISITING_HOURS])
    hours = np.array([(start, end) for start, end, _ in VISITING_HOURS])[kind]
    return pd.DataFrame({"company_id": world.accounts["company_id"].to_numpy(), "open_hour": hours[:, 0],
                         "close_hour": hours[:, 1]})  # fmt: skip
