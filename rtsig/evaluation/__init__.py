"""``rtsig evaluate``: were these signals any good? (docs/EVALUATION.md)

``run`` runs the offline pipeline with a price tape on its decoded events, ``metrics`` scores each
signal against the prices that followed it, ``report`` prints the table and draws the plots,
``grid`` sweeps parameters in parallel processes and ranks the combinations.
"""

from rtsig.evaluation.run import DEFAULT_HORIZONS_S, evaluate

__all__ = ["DEFAULT_HORIZONS_S", "evaluate"]
