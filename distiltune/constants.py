"""Values shared across layers (data, models, losses), kept where every side can import them."""

IGNORE_INDEX = -100  # label of unlabeled rows (classification); NaN plays that role for regression


class AtMost(int):
    """A ``num_labeled`` that caps rather than asks (``--quick``'s slice): a training split with fewer
    rows keeps them all, where a num_labeled the user set above the row count is refused."""
