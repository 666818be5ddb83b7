"""Values shared across layers (data, models, losses), kept where every side can import them."""

# Soft-target temperature where the config leaves it unset; a task may set its own (tasks.base.Task).
DEFAULT_TEMPERATURE = 4.0

IGNORE_INDEX = -100  # label of unlabeled rows (classification); NaN plays that role for regression

# Temperatures at which a top-k teacher cache stores its tail's log-sum-exp; between them log-mass is
# interpolated in 1/T (log-sum-exp is smooth and convex in 1/T), so every temperature a schedule
# passes through is covered (data.teacher_cache).
TAIL_TEMPERATURES = (1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0, 24.0)

# The top-k form's columns in the teacher cache: values, their class ids, the tail's log-sum-exp on
# the grid; a language model's cache may add draws from the tail (ids, values: losses.vocab.TopK).
TOPK_COLUMNS = ("teacher_topk_values", "teacher_topk_indices", "teacher_tail_lse")
TAIL_SAMPLE_COLUMNS = ("teacher_tail_ids", "teacher_tail_values")


class AtMost(int):
    """A ``num_labeled`` that caps rather than asks (``--quick``'s slice): a training split with fewer
    rows keeps them all, where a num_labeled the user set above the row count is refused."""
