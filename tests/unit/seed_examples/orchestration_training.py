# Seed example: 001_02381373b298663c.txt, section "`training.py` - Training Coordination", block 1.
# Copied verbatim with app.p2p renamed ringrift_fleet; test_seed_examples.py runs it.
# ruff: noqa
# fmt: off
from ringrift_fleet import TrainingThresholds, calculate_training_priority, should_trigger_training

thresholds = TrainingThresholds()
print(f"Min games: {thresholds.MIN_GAMES}")
print(f"Staleness hours: {thresholds.STALENESS_HOURS}")

# Calculate priority for a board config
priority = calculate_training_priority(
    games_since_last_train=5000,
    hours_since_last_train=12.0,
    current_elo=1200,
)

# Check if training should trigger
should_train = should_trigger_training(
    games_available=6000,
    hours_since_train=24.0,
    thresholds=thresholds,
)
