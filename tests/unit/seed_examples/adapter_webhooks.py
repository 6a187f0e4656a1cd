# Seed example: 000_1b0aaf31d1295677.txt, section "Webhook Notifications", block 1.
# Copied verbatim with app.p2p renamed ringrift_fleet; test_seed_examples.py runs it.
# ruff: noqa
# fmt: off
from ringrift_fleet import send_webhook_notification

send_webhook_notification(
    event_type="training_complete",
    title="Training Complete: hex8_2p",
    message="Elo +15.3 after 2.5h training",
    severity="info",  # info, warning, error, critical
    details={"board_type": "hex8", "elo_change": 15.3},
)
