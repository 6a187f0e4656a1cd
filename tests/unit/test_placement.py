"""GPU names as NVML, inventories and people write them map to the right ranking key."""

from __future__ import annotations

import logging

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ringrift_fleet import placement
from ringrift_fleet.config import GPU_POWER_RANKINGS, UNKNOWN_GPU_POWER, P2PConfig
from ringrift_fleet.placement import (
    TIERS,
    can_train,
    gpu_power,
    gpu_tier,
    normalize_gpu_name,
)

NVML_NAMES = [
    ("NVIDIA GH200 480GB", "GH200"),
    ("NVIDIA H200", "H200"),
    ("NVIDIA H200 NVL", "H200"),
    ("NVIDIA H100 80GB HBM3", "H100"),
    ("NVIDIA H100 PCIe", "H100"),
    ("NVIDIA H100 NVL", "H100"),
    ("NVIDIA H100 80GB HBM3 MIG 1g.10gb", "H100"),
    ("NVIDIA A100-SXM4-80GB", "A100"),
    ("NVIDIA A100 80GB PCIe", "A100"),
    ("NVIDIA GeForce RTX 5090", "RTX_5090"),
    ("NVIDIA GeForce RTX 4090", "RTX_4090"),
    ("NVIDIA GeForce RTX 3090", "RTX_3090"),
    ("NVIDIA RTX A6000", "A6000"),
    ("NVIDIA A40", "A40"),
    ("NVIDIA A10", "A10"),
    ("NVIDIA RTX A4000", "A4000"),
    ("Tesla V100-SXM2-32GB", "V100"),
    ("Tesla T4", "T4"),
    ("NVIDIA L4", "L4"),
    ("NVIDIA L40", "L40"),
    ("NVIDIA L40S", "L40S"),
    ("NVIDIA RTX 6000 Ada Generation", "RTX_6000_ADA"),
]

INVENTORY_SPELLINGS = [
    ("h100", "H100"),
    ("gh200", "GH200"),
    ("RTX_4090", "RTX_4090"),
    ("rtx-4090", "RTX_4090"),
    ("rtx 4090", "RTX_4090"),
    ("RTX4090", "RTX_4090"),
    ("4090", "RTX_4090"),
    ("5090", "RTX_5090"),
    ("a100 80 GB", "A100"),
    ("rtx_6000_ada", "RTX_6000_ADA"),
    ("l40s", "L40S"),
]

# (one, other): similar names of different cards must never share a key.
TRAP_PAIRS = [
    ("NVIDIA GH200 480GB", "NVIDIA H200"),
    ("NVIDIA A40", "NVIDIA RTX A4000"),
    ("NVIDIA A10", "NVIDIA A100-SXM4-80GB"),
    ("NVIDIA L40", "NVIDIA L40S"),
    ("NVIDIA L4", "NVIDIA L40"),
    ("NVIDIA A100 80GB PCIe", "NVIDIA A10"),
    ("NVIDIA GeForce RTX 4090", "NVIDIA GeForce RTX 4090 D"),
    ("NVIDIA GeForce RTX 3090", "NVIDIA GeForce RTX 3090 Ti"),
    ("NVIDIA RTX 6000 Ada Generation", "Quadro RTX 6000"),
    ("NVIDIA A10", "NVIDIA A10G"),
]


@pytest.mark.parametrize(("raw", "key"), NVML_NAMES + INVENTORY_SPELLINGS)
def test_known_names_map_to_their_key(raw: str, key: str) -> None:
    assert normalize_gpu_name(raw) == key
    assert gpu_power(raw) == GPU_POWER_RANKINGS[key]


@pytest.mark.parametrize("raw", [None, "", "   ", "cpu", "CPU", "none", "None"])
def test_no_gpu_is_cpu(raw: str | None) -> None:
    assert normalize_gpu_name(raw) == "CPU"
    assert gpu_power(raw) == 0.1
    assert gpu_tier(raw) == "cpu"


@pytest.mark.parametrize(("one", "other"), TRAP_PAIRS)
def test_no_substring_traps(one: str, other: str) -> None:
    assert normalize_gpu_name(one) != normalize_gpu_name(other)


@pytest.mark.parametrize(
    "raw", ["NVIDIA GeForce RTX 4090 D", "NVIDIA A10G", "Quadro RTX 6000", "NVIDIA", "Radeon"]
)
def test_unknown_gpu_gets_conservative_power(raw: str) -> None:
    assert normalize_gpu_name(raw) == "UNKNOWN"
    assert gpu_power(raw) == UNKNOWN_GPU_POWER
    assert not can_train(raw, 80.0, P2PConfig(NODE_ID="n"))


def test_unknown_gpu_warned_once_per_name(caplog: pytest.LogCaptureFixture) -> None:
    placement._warned.clear()
    with caplog.at_level(logging.WARNING, logger="ringrift_fleet.placement"):
        for _ in range(5):
            normalize_gpu_name("Matrox G200eW")
        normalize_gpu_name("Matrox G400")
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2
    assert "Matrox G200eW" in messages[0] and "GPU_POWER_RANKINGS" in messages[0]


def test_seed_rankings_exact() -> None:
    seed = {
        "GH200": 1.2,
        "H100": 1.0,
        "A100": 0.8,
        "RTX_5090": 0.7,
        "RTX_4090": 0.5,
        "A10": 0.4,
        "CPU": 0.1,
    }
    for key, value in seed.items():
        assert GPU_POWER_RANKINGS[key] == value


def test_every_ranking_key_has_a_tier_and_tiers_are_ordered() -> None:
    assert TIERS == ("t1", "t2", "t3", "t4", "cpu")
    assert gpu_tier("GH200") == gpu_tier("H100") == "t1"
    assert gpu_tier("A100") == gpu_tier("L40S") == "t2"
    assert gpu_tier("RTX_4090") == gpu_tier("A10") == "t3"
    assert gpu_tier("T4") == gpu_tier("A4000") == "t4"
    assert gpu_tier("CPU") == "cpu"
    # stronger GPU → same or earlier tier
    keys = sorted(GPU_POWER_RANKINGS, key=GPU_POWER_RANKINGS.__getitem__, reverse=True)
    positions = [TIERS.index(gpu_tier(k)) for k in keys]
    assert positions == sorted(positions)


@given(st.floats(min_value=0.0, max_value=5.0), st.floats(min_value=0.0, max_value=5.0))
def test_tier_monotone_in_power(a: float, b: float) -> None:
    lo, hi = sorted((a, b))
    assert TIERS.index(gpu_tier(hi)) <= TIERS.index(gpu_tier(lo))


def test_can_train_uses_config_thresholds() -> None:
    cfg = P2PConfig(NODE_ID="n")
    assert can_train("H100", 80, cfg)
    assert can_train("NVIDIA GeForce RTX 4090", 24, cfg)
    assert not can_train("A10", 24, cfg)  # power 0.4 < 0.5
    assert not can_train("H100", 16, cfg)  # too little VRAM
    assert not can_train("CPU", 512, cfg)
    strict = cfg.replace(TRAINING_MIN_POWER=1.0, TRAINING_MIN_VRAM_GB=80)
    assert can_train("GH200", 96, strict)
    assert not can_train("A100", 80, strict)


# --- properties -------------------------------------------------------------------

KEYS = sorted(k for k in GPU_POWER_RANKINGS if k != "CPU")


@given(st.one_of(st.none(), st.text(max_size=60)))
def test_never_raises_and_returns_a_known_key(raw: str | None) -> None:
    key = normalize_gpu_name(raw)
    assert key in GPU_POWER_RANKINGS or key == "UNKNOWN"
    assert gpu_power(raw) > 0
    assert gpu_tier(raw) in TIERS


@given(st.one_of(st.none(), st.text(max_size=40)))
def test_idempotent_on_outputs(raw: str | None) -> None:
    key = normalize_gpu_name(raw)
    assert normalize_gpu_name(key) == key


def _model_words(key: str) -> list[str]:
    return key.split("_")


_vendor = st.sampled_from(["", "NVIDIA ", "nvidia ", "NVIDIA GeForce ", "Tesla "])
_suffix = st.sampled_from(["", " 80GB", " 80 GB", " PCIe", " HBM3", "-SXM4-80GB", " 24GB GDDR6X"])
_sep = st.sampled_from([" ", "_", "-", "  "])


@given(
    st.sampled_from(KEYS),
    _vendor,
    _suffix,
    _sep,
    st.sampled_from([str.upper, str.lower, str.title]),
)
def test_decorations_do_not_change_the_key(
    key: str, vendor: str, suffix: str, sep: str, case: object
) -> None:
    words = _model_words(key)
    decorated = vendor + case(sep.join(words)) + suffix  # type: ignore[operator]
    assert normalize_gpu_name(decorated) == key, decorated


@given(st.sampled_from(KEYS), st.sampled_from(KEYS), _vendor)
def test_distinct_keys_stay_distinct_when_decorated(a: str, b: str, vendor: str) -> None:
    if a != b:
        assert normalize_gpu_name(vendor + " ".join(_model_words(a))) != normalize_gpu_name(
            vendor + " ".join(_model_words(b))
        )
