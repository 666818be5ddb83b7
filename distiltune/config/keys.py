"""Which config keys shape which stage's result: the one place stage fingerprints read.

A finished stage is reused on ``--resume`` when the keys that shape it are unchanged; keys that
only change how a run is logged, saved or reported never force a stage to run again.
"""

# Keys that change no stage's result (left out of every fingerprint).
NOT_IN_FINGERPRINT = frozenset({
    "output_dir", "logging_steps", "report_to", "latency_samples", "throughput_batch_size", "baseline", "disable_tqdm",
    "logging_strategy", "logging_first_step", "save_strategy", "save_total_limit", "save_steps", "run_name", "project",
    "trackio_space_id", "dataloader_num_workers", "log_level", "export",
    "answer_checker", "generation_samples", "generation_max_new_tokens",  # evaluation only
    "nan_policy", "grad_spike_factor",  # so `--resume --nan_policy skip` continues a stopped stage
})

# Settings that shape any training stage (each stage adds its own model, data and epochs).
TRAIN_KEYS = ("per_device_train_batch_size", "gradient_accumulation_steps", "seed", "max_length", "mixed_precision",
              "weight_decay", "warmup_steps", "lr_scheduler_type", "optim", "max_grad_norm", "train_sampling_strategy")

# What shapes the fine-tuned teacher beyond TRAIN_KEYS and its training rows.
TEACHER_KEYS = ("teacher", "teacher_num_train_epochs", "teacher_learning_rate", "freeze_embeddings", "freeze_layers", "teacher_lora",
                "teacher_stop", "teacher_max_epochs", "plateau_patience", "plateau_min_epochs")

# What shapes a stage that stops on a validation plateau (besides its ceiling of epochs).
PLATEAU_KEYS = ("plateau_patience", "plateau_min_epochs", "metric")
