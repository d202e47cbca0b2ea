"""``keep_freed_buffers()``: a glibc allocator setting for bulk transfers
(docs/exec.md §7.2).

Output moves in buffers of up to 1 MiB; through TLS each one is also
encrypted or decrypted into a new buffer. With glibc's default thresholds
the top of the heap is returned to the system after such a buffer is freed
and taken back for the next one: a page fault per 4 KiB. Measured on a
1 GiB TLS stream, that was about half the exec server's CPU time, and
client-side it held ``wirekit exec`` over TLS at about 1,000 MB/s against
about 1,400 MB/s with the setting.

The setting is process-wide, so the programs make it (``wirekit serve exec``
and ``wirekit exec`` do), never the library on its own. An application that
streams a lot through wirekit may call it as well.
"""

from __future__ import annotations

from typing import Final

__all__ = ["MMAP_THRESHOLD", "TRIM_THRESHOLD", "keep_freed_buffers"]

#: glibc's mallopt parameters (malloc.h) and the values keep_freed_buffers sets.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
TRIM_THRESHOLD: Final = 32 * 1024 * 1024
MMAP_THRESHOLD: Final = 4 * 1024 * 1024

_tuned = False


def keep_freed_buffers() -> None:
    """Let glibc keep up to 32 MiB of freed heap memory instead of returning
    it to the system at once, and serve buffers under 4 MiB from the heap.
    Process-wide; once is enough; does nothing without glibc."""
    global _tuned
    if _tuned:
        return
    _tuned = True
    import ctypes  # here: 1 ms of start-up that only the programs using this pay

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return
    mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)
    mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
