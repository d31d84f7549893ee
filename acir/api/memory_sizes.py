"""Memory sizes for ``acir-fit``: what ``--memory`` means in bytes, and whether a real run has room.

``resolve_memory`` turns bytes, a size with a unit, ``cuda`` (the device's free memory) or
``ram`` (available RAM) into bytes; ``no_room`` says why a run of a planned peak should not be
tried on a device now; ``out_of_memory`` recognises the errors a run that did not fit raises.
"""

from __future__ import annotations

from acir.errors import AcirError, UsageError

__all__ = ["available_ram", "no_room", "out_of_memory", "resolve_memory"]

#: A real run (profile, verify) on the CPU is attempted only when its planned peak is at most this share
#: of the available RAM (the rest: allocator slack, the page cache others need); on CUDA up to all of the
#: free memory (what ``--memory cuda`` asks for), and an out-of-memory error is caught and reported.
CPU_HEADROOM = 0.9


def available_ram() -> int | None:
    """Available RAM in bytes (Linux's ``MemAvailable``), or None when it cannot be determined."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    parts = line.split()
                    return int(parts[1]) * (1024 if len(parts) < 3 or parts[2].lower() == "kb" else 1)
    except (OSError, ValueError, IndexError):
        return None
    return None


def _cuda_free() -> tuple[int, str]:
    import torch

    if not torch.cuda.is_available():
        raise AcirError("memory 'cuda' means the CUDA device's free memory, but torch sees no CUDA device on this "
                        "machine; give the size in bytes instead, e.g. --memory 16GiB")
    free, _total = torch.cuda.mem_get_info()
    return free, f"free memory of {torch.cuda.get_device_name()}"


def resolve_memory(memory: int | str) -> tuple[int, str]:
    """(bytes, where they come from) for ``memory``: bytes, a size with a unit (``16GiB``), ``cuda``
    (the CUDA device's free memory now) or ``ram`` (available RAM); a percentage is refused, as it
    would have nothing to refer to."""
    from acir.analysis.budget import parse_budget
    from acir.errors import ParseError

    if isinstance(memory, bool) or not isinstance(memory, (int, str)):
        raise UsageError(f"memory must be bytes (an int) or a size such as '16GiB', 'cuda' or 'ram', "
                         f"not {type(memory).__name__}")
    if isinstance(memory, int):
        if memory < 1:
            raise UsageError(f"memory {memory}: it must be more than 0 bytes")
        return memory, "given"
    word = memory.strip().lower()
    if word == "cuda":
        return _cuda_free()
    if word == "ram":
        ram = available_ram()
        if ram is None:
            raise AcirError("memory 'ram' means the available RAM, but it cannot be determined on this system "
                            "(no MemAvailable in /proc/meminfo); give the size in bytes instead, e.g. --memory 16GiB")
        return ram, "available RAM"
    if word.endswith("%"):
        raise UsageError(f"memory {memory!r}: a percentage has nothing to refer to here (the batch is what is "
                         "searched); give bytes with a unit (16GiB, 512MiB, 4GB), cuda or ram")
    try:
        n = parse_budget(memory).bytes
    except ParseError as e:
        raise UsageError(str(e).replace("bad budget", "bad memory size")
                         .replace(" or a percentage (60%)", ", cuda or ram")) from None
    assert n is not None
    return n, "given"


def device_free(device: str) -> int | None:
    """Bytes a real run may use on ``device`` now, or None when unknown."""
    if device.startswith("cuda"):
        import torch

        return torch.cuda.mem_get_info()[0] if torch.cuda.is_available() else None
    return available_ram()


def no_room(device: str, need: int) -> str | None:
    """Why a real run of ``need`` bytes should not be tried on ``device`` now, or None when it may."""
    from acir.units import format_bytes

    free = device_free(device)
    if free is None:
        return None
    share = 1.0 if device.startswith("cuda") else CPU_HEADROOM
    if need <= share * free:
        return None
    return (f"its planned peak {format_bytes(need)} is more than {'' if share == 1.0 else f'{share:.0%} of '}"
            f"the {format_bytes(free)} free on {device} here")


def out_of_memory(e: BaseException) -> bool:
    import torch

    return isinstance(e, (torch.OutOfMemoryError, MemoryError)) or (
        isinstance(e, RuntimeError) and "can't allocate memory" in str(e))
