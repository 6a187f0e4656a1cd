"""GPU names → ranking keys → power and tier: the pure part of placement.

NVML, inventories and humans spell the same card many ways ("NVIDIA H100 80GB
HBM3", "h100", "H100-SXM5"), and similar names hide different cards (GH200 is
not H200, A40 is not A4000, RTX 4090 D is not RTX 4090).  So names are matched
on whole model tokens after dropping decoration (vendor, memory size, form
factor), never by substring.
"""

from __future__ import annotations

import functools
import logging
import re
import threading

from ringrift_fleet.config import GPU_POWER_RANKINGS, UNKNOWN_GPU_POWER, P2PConfig, get_p2p_config

log = logging.getLogger(__name__)

CPU = "CPU"
UNKNOWN = "UNKNOWN"

# Tier thresholds on GPU_POWER_RANKINGS values, strongest first.  Each tier is
# a Celery queue family: a job that needs H100-class work goes to "t1", and
# weaker tiers take what the stronger ones leave.
#   t1: power >= 1.0  (H100, H200, GH200)
#   t2: power >= 0.6  (A100, L40S, RTX 5090, RTX 6000 Ada, L40)
#   t3: power >= 0.3  (RTX 4090, A6000, A40, A10, RTX 3090, V100, L4, unknown GPUs)
#   t4: any other GPU (A4000, T4)
#   cpu: the CPU key (no GPU), or a power at or below the CPU ranking
TIER_THRESHOLDS: tuple[tuple[str, float], ...] = (("t1", 1.0), ("t2", 0.6), ("t3", 0.3))
TIERS: tuple[str, ...] = ("t1", "t2", "t3", "t4", "cpu")

# Tokens that describe packaging rather than the model: dropped before matching.
_DECORATION = re.compile(
    r"^(NVIDIA|TESLA|GEFORCE|QUADRO|PCIE|SXM\d*|HBM\d*E?|NVL|GDDR\d*X?|GENERATION|GPU|MIG"
    r"|GB|GIB|TB|\d+(G|GB|GIB|TB)|\d+G\.\d+GB)$"
)

# Exact token sequences (after decoration is dropped) for each key.
_PATTERNS: dict[tuple[str, ...], str] = {
    ("GH200",): "GH200",
    ("H200",): "H200",
    ("H100",): "H100",
    ("A100",): "A100",
    ("L40S",): "L40S",
    ("L40",): "L40",
    ("L4",): "L4",
    ("A40",): "A40",
    ("A10",): "A10",
    ("V100",): "V100",
    ("T4",): "T4",
    ("A6000",): "A6000",
    ("RTX", "A6000"): "A6000",
    ("A4000",): "A4000",
    ("RTX", "A4000"): "A4000",
    ("RTX", "5090"): "RTX_5090",
    ("5090",): "RTX_5090",
    ("RTX", "4090"): "RTX_4090",
    ("4090",): "RTX_4090",
    ("RTX", "3090"): "RTX_3090",
    ("3090",): "RTX_3090",
    ("RTX", "6000", "ADA"): "RTX_6000_ADA",
    ("6000", "ADA"): "RTX_6000_ADA",
    ("CPU",): CPU,
    ("NONE",): CPU,
    ("UNKNOWN",): UNKNOWN,
}

_warned: set[str] = set()
_WARNED_MAX = 1024  # bound on remembered names: past it, new unknown names go unwarned
_warned_lock = threading.Lock()


def _tokens(raw: str) -> list[str]:
    out: list[str] = []
    words = re.findall(r"[A-Z0-9.]+", raw.upper())
    for i, word in enumerate(words):
        word = word.strip(".")
        if not word or _DECORATION.match(word):
            continue
        # "80 GB": a bare number followed by a size unit is a memory size.
        if word.isdigit() and i + 1 < len(words) and words[i + 1] in ("GB", "GIB", "TB"):
            continue
        glued = re.fullmatch(r"RTX(\d{4})", word)  # "RTX4090"
        if glued:
            out.extend(("RTX", glued.group(1)))
            continue
        out.append(word)
    return out


def _warn_unknown(raw: str) -> None:
    with _warned_lock:
        if raw in _warned or len(_warned) >= _WARNED_MAX:
            return
        _warned.add(raw)
    log.warning(
        "unknown GPU %r: ranked %.2f (UNKNOWN_GPU_POWER) until it is added to GPU_POWER_RANKINGS",
        raw,
        UNKNOWN_GPU_POWER,
    )


@functools.lru_cache(maxsize=1024)
def _lookup(raw: str) -> str | None:
    """Key for a non-empty name, or None; cached (a fleet has a handful of distinct names)."""
    return _PATTERNS.get(tuple(_tokens(raw)))


def normalize_gpu_name(raw: str | None, *, warn: bool = True) -> str:
    """The GPU_POWER_RANKINGS key for ``raw``; "CPU" for no GPU, "UNKNOWN" (warned once) else.

    ``warn=False`` is for callers that report unknown names themselves (the inventory).
    """
    if raw is None or not str(raw).strip():
        return CPU
    raw = str(raw)
    if raw in GPU_POWER_RANKINGS:
        return raw
    key = _lookup(raw)
    if key is None:
        if warn:
            _warn_unknown(raw)
        return UNKNOWN
    return key


def gpu_power(name: str | None) -> float:
    """Relative power (H100 = 1.0) of a raw name or key; unknown GPUs get UNKNOWN_GPU_POWER."""
    key = normalize_gpu_name(name)
    return GPU_POWER_RANKINGS.get(key, UNKNOWN_GPU_POWER)


def gpu_tier(power: float | str | None) -> str:
    """The tier (one of TIERS) of a power value, or of a GPU name or key (None: no GPU)."""
    if power is None or isinstance(power, str):
        if normalize_gpu_name(power) == CPU:
            return "cpu"
        power = gpu_power(power)
    if power <= GPU_POWER_RANKINGS[CPU]:
        return "cpu"
    for tier, threshold in TIER_THRESHOLDS:
        if power >= threshold:
            return tier
    return "t4"


def can_train(gpu_key: str, vram_gb: float, config: P2PConfig | None = None) -> bool:
    """Whether a GPU is strong and large enough to train (TRAINING_MIN_POWER / _VRAM_GB)."""
    cfg = config or get_p2p_config()
    key = normalize_gpu_name(gpu_key)
    if key in (CPU, UNKNOWN):
        return False
    return gpu_power(key) >= cfg.TRAINING_MIN_POWER and vram_gb >= cfg.TRAINING_MIN_VRAM_GB


# VRAM of the common variant of each card, GB: the inventory's default when a
# host does not say (a 40 GB A100 or 16 GB V100 host should set gpu_vram_gb).
TYPICAL_VRAM_GB: dict[str, float] = {
    "GH200": 96.0,
    "H200": 141.0,
    "H100": 80.0,
    "A100": 80.0,
    "L40S": 48.0,
    "RTX_5090": 32.0,
    "RTX_6000_ADA": 48.0,
    "L40": 48.0,
    "RTX_4090": 24.0,
    "A6000": 48.0,
    "A40": 48.0,
    "A10": 24.0,
    "RTX_3090": 24.0,
    "V100": 32.0,
    "L4": 24.0,
    "A4000": 16.0,
    "T4": 16.0,
}


def typical_vram_gb(gpu_key: str) -> float:
    """Usual VRAM of a key's card; 0.0 for CPU and for GPUs we do not know."""
    return TYPICAL_VRAM_GB.get(normalize_gpu_name(gpu_key), 0.0)
