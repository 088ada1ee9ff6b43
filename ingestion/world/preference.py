"""Ground-truth preference of the synthetic world: how users respond to what they are shown.

This is the oracle behind both the logged data and simulated A/B tests. A user's
utility for an item combines latent affinity (taste · item), the item's quality,
price against the leaf's typical price scaled by the user's price sensitivity, and a
scene effect; examination falls with position (position bias). Clicks, carts and
purchases follow as a cascade: cart only after click, purchase only after cart.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ingestion.world.catalog import LATENT_DIM, Catalog
from ingestion.world.population import Population

# Base click logit per scene: search carries intent, feed is browsing.
SCENE_BIAS = {"feed": -4.9, "search": -3.9, "similar": -4.4}
# Examination probability at position p (0-based): (1 + p) ** -ETA.
POSITION_ETA = 0.6


@dataclass(frozen=True)
class Responses:
    """Boolean outcome per shown item; arrays share the shape of the shown items."""

    click: np.ndarray
    cart: np.ndarray
    purchase: np.ndarray


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


@dataclass(frozen=True)
class Preference:
    """The world's ground truth; indices are positions in catalog/population arrays."""

    catalog: Catalog
    population: Population

    def affinity(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Latent match between users and items (broadcasting shapes), about N(0, 1.5)."""
        u = self.population.vec[users]
        v = self.catalog.item_vec[items]
        return (u * v).sum(-1) / np.sqrt(LATENT_DIM) * 0.6

    def price_penalty(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Log price above the leaf's typical price, scaled by the user's sensitivity."""
        cat = self.catalog
        rel = np.log(cat.item_price[items] / cat.tree.l3_price[cat.item_l3[items]])
        return self.population.price_sensitivity[users] * rel

    def utility(self, users: np.ndarray, items: np.ndarray, scene: str | np.ndarray) -> np.ndarray:
        """Click logit before position bias."""
        bias = (
            np.vectorize(SCENE_BIAS.__getitem__)(scene)
            if isinstance(scene, np.ndarray)
            else SCENE_BIAS[scene]
        )
        return (
            bias
            + self.affinity(users, items)
            + self.catalog.item_quality[items]
            - self.price_penalty(users, items)
        )

    @staticmethod
    def examination(position: np.ndarray) -> np.ndarray:
        """Probability that a user looks at the slot at 0-based `position`."""
        return (1.0 + np.asarray(position, dtype=float)) ** -POSITION_ETA

    def click_probability(
        self,
        users: np.ndarray,
        items: np.ndarray,
        scene: str | np.ndarray,
        position: np.ndarray | None = None,
    ) -> np.ndarray:
        """P(click | shown); with `position=None` the unbiased (top-slot) probability."""
        p = _sigmoid(self.utility(users, items, scene))
        return p if position is None else p * self.examination(position)

    def cart_probability(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """P(cart | click)."""
        return _sigmoid(
            -4.1 + 0.8 * self.affinity(users, items) - 0.5 * self.price_penalty(users, items)
        )

    def purchase_probability(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """P(purchase | cart)."""
        return _sigmoid(
            -2.4 + 0.5 * self.affinity(users, items) - 1.0 * self.price_penalty(users, items)
        )

    def expected_gmv(self, users: np.ndarray, items: np.ndarray, scene: str) -> np.ndarray:
        """Expected purchase value of showing `items` in the top slot."""
        p = (
            self.click_probability(users, items, scene)
            * self.cart_probability(users, items)
            * self.purchase_probability(users, items)
        )
        return p * self.catalog.item_price[items]

    def respond(
        self,
        users: np.ndarray,
        items: np.ndarray,
        scene: str | np.ndarray,
        positions: np.ndarray,
        rng: np.random.Generator,
    ) -> Responses:
        """Draw clicks, carts and purchases for items shown at `positions`."""
        click = rng.random(items.shape) < self.click_probability(users, items, scene, positions)
        cart = click & (rng.random(items.shape) < self.cart_probability(users, items))
        purchase = cart & (rng.random(items.shape) < self.purchase_probability(users, items))
        return Responses(click=click, cart=cart, purchase=purchase)
