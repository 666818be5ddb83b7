"""Values shared across layers (data, models, losses), kept where every side can import them."""

IGNORE_INDEX = -100  # label of unlabeled rows (classification); NaN plays that role for regression
