"""Child process for the kill test: rewrites one large file forever through facegcn.io.atomic.

``python atomic_rewriter.py PATH SIZE START [naive]`` writes generation START, START+1, ... Each
content is self-describing (header with generation and length, a payload byte derived from the
generation, a trailer repeating the generation), so a reader can tell a complete file from a torn
one. Prints "ready" after the first complete write. ``naive`` writes in place (open + write), to
prove that the test can see torn files.
"""

from __future__ import annotations

import sys

HEADER = b"FACEGCN-ATOMIC gen=%012d size=%012d\n"
TRAILER = b"\nend gen=%012d\n"


def content(gen: int, size: int) -> bytes:
    head = HEADER % (gen, size)
    tail = TRAILER % gen
    return head + bytes([gen % 251]) * (size - len(head) - len(tail)) + tail


def check(data: bytes) -> int:
    """The generation of a complete file; raises ValueError for a torn or foreign one."""
    n = len(HEADER % (0, 0))
    head = data[:n]
    if not head.startswith(b"FACEGCN-ATOMIC gen="):
        raise ValueError(f"bad header {head[:40]!r} ({len(data)} bytes)")
    gen, size = int(head[19:31]), int(head[37:49])
    if len(data) != size or data != content(gen, size):
        raise ValueError(f"torn file: gen {gen}, {len(data)} of {size} bytes")
    return gen


def main() -> None:
    path, size, gen = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    naive = len(sys.argv) > 4 and sys.argv[4] == "naive"
    from facegcn.io.atomic import atomic_write_bytes

    first = True
    while True:
        data = content(gen, size)
        if naive:
            with open(path, "wb") as fh:
                for i in range(0, len(data), 1 << 16):  # several syscalls, like any large write
                    fh.write(data[i:i + (1 << 16)])
        else:
            atomic_write_bytes(path, data)
        if first:
            print("ready", flush=True)
            first = False
        gen += 1


if __name__ == "__main__":
    main()
