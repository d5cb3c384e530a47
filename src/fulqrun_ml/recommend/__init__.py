"""Recommendations that act: next best action, pricing, coaching and strategy, with causal effect estimates
evaluated against the simulator's known counterfactuals."""
