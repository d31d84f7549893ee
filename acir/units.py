"""Bytes and seconds for people, as every report, message and picture of acir writes them."""

from __future__ import annotations


def format_bytes(n: int) -> str:
    """``n`` bytes for people: ``512 B``, ``512.0 KiB``, ``180.7 MiB`` (binary units)."""
    if abs(n) < 1024:
        return f"{n} B"
    for unit in ("KiB", "MiB", "GiB"):
        n /= 1024
        if abs(n) < 1024:
            break
    else:
        unit, n = "TiB", n / 1024
    return f"{n:.1f} {unit}"


def human_time(s: float) -> str:
    """0.00123 -> '1.23 ms'; 'us' rather than 'µs', which some fonts lack."""
    if s >= 1.0:
        return f"{s:.2f} s"
    if s >= 1e-3:
        return f"{s * 1e3:.2f} ms"
    return f"{s * 1e6:.1f} us"
