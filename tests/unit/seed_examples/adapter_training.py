# Seed example: 000_1b0aaf31d1295677.txt, section "Training Coordination", block 1.
# Copied verbatim with app.p2p renamed ringrift_fleet; test_seed_examples.py runs it.
# ruff: noqa
# fmt: off
from ringrift_fleet import should_trigger_training, calculate_training_priority

# Check if training should start
should_train, reason = should_trigger_training(
    games_available=5000,
    hours_since_last_training=12.0,
)

# Rank nodes for training dispatch
priority = calculate_training_priority(
    gpu_type="H100", memory_gb=80, current_load=30, has_training_data=True
)
