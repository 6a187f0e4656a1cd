# Seed example: 001_02381373b298663c.txt, section "`notifications.py` - Webhooks", block 1.
# Copied verbatim with app.p2p renamed ringrift_fleet; test_seed_examples.py runs it.
# ruff: noqa
# fmt: off
from ringrift_fleet import WebhookConfig, send_webhook_notification

# Configure webhook
config = WebhookConfig(
    url="https://hooks.slack.com/...",
    events=["training_complete", "model_promoted"],
)

# Send notification
send_webhook_notification(
    config,
    event="training_complete",
    payload={"model": "hex8_2p_v3", "accuracy": 0.76},
)
