# Seed example: 001_02381373b298663c.txt, section "`models.py` - Data Structures", block 2.
# Copied verbatim with app.p2p renamed ringrift_fleet; test_seed_examples.py runs it.
# ruff: noqa
# fmt: off
from ringrift_fleet.models import ResourceMetrics, NodeSummary

metrics = ResourceMetrics(
    cpu_percent=45.0,
    memory_percent=60.0,
    gpu_memory_percent=80.0,
    disk_percent=55.0,
)
print(f"Load score: {metrics.load_score}")  # Weighted composite
print(f"Overloaded: {metrics.is_overloaded}")  # True if any > threshold
