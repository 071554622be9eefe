"""Blank out the GPU machine code a CUDA library carries for architectures other than the one kept,
so the library compresses to what one device call can carry (64 MiB).

    python3 bench/gpu/keep_arch.py libonnxruntime_providers_cuda.so out.so --arch 90

The library's `.nv_fatbin` section holds one cubin per kernel and architecture (sm_75 … sm_120). The
entries of other architectures keep their headers (so the CUDA driver still parses the container and
simply does not pick them) and get zero payloads; the kept architecture's entries are untouched. The
H100 and H200 are sm_90. Only for carrying a library to such a machine: the result runs on sm_90 alone.
"""

from __future__ import annotations

import argparse
import collections
import struct
from pathlib import Path

FATBIN_MAGIC = 0xBA55ED50
ENTRY_CUBIN = 2


def fatbin_section(data: bytes) -> tuple[int, int]:
    """File offset and size of the ELF64 `.nv_fatbin` section."""
    if data[:4] != b"\x7fELF" or data[4] != 2:
        raise ValueError("not an ELF64 file")
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)

    def header(i: int) -> tuple[int, int, int]:
        name, _, _, _, offset, size = struct.unpack_from("<IIQQQQ", data, shoff + i * shentsize)
        return name, offset, size

    _, strings, _ = header(shstrndx)
    for i in range(shnum):
        name, offset, size = header(i)
        end = data.index(b"\0", strings + name)
        if data[strings + name:end] == b".nv_fatbin":
            return offset, size
    raise ValueError("no .nv_fatbin section")


def keep_arch(data: bytearray, arch: int) -> collections.Counter:
    """Zeroes the payloads of cubins for other architectures; returns bytes per (kind, arch)."""
    offset, size = fatbin_section(data)
    seen: collections.Counter = collections.Counter()
    p, end = offset, offset + size
    while p < end:
        magic, _, header_size, fat_size = struct.unpack_from("<IHHQ", data, p)
        if magic != FATBIN_MAGIC:
            p += 8  # alignment padding between containers
            continue
        q, container_end = p + header_size, p + header_size + fat_size
        while q < container_end:
            kind, _, entry_header, payload = struct.unpack_from("<HHIQ", data, q)
            entry_arch, = struct.unpack_from("<I", data, q + 28)
            seen[(kind, entry_arch)] += payload
            if kind == ENTRY_CUBIN and entry_arch != arch:
                data[q + entry_header:q + entry_header + payload] = bytes(payload)
            q += entry_header + payload
        p = container_end
    return seen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("library", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--arch", type=int, default=90)
    args = parser.parse_args()
    data = bytearray(args.library.read_bytes())
    seen = keep_arch(data, args.arch)
    if not any(arch == args.arch for _, arch in seen):
        raise SystemExit(f"{args.library} has no code for sm_{args.arch}: {sorted(seen)}")
    args.out.write_bytes(data)
    for (kind, arch), size in sorted(seen.items()):
        state = "kept" if kind != ENTRY_CUBIN or arch == args.arch else "blanked"
        print(f"{'cubin' if kind == ENTRY_CUBIN else 'kind ' + str(kind)} sm_{arch}: {size / 1e6:.1f} MB {state}")


if __name__ == "__main__":
    main()
