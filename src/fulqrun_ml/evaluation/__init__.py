"""Model comparison on one time-based holdout: the leaderboard of neural backbones and baselines."""
