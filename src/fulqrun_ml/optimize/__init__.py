"""Territory design and rep-account assignment solved with real solvers (HiGHS through scipy) on model estimates.

`docs/optimize.md` describes the problems, the estimates they read and the measured results.
"""
