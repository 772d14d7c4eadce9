"""Build the small initramfs that boots the IPVS test VM.

The archive holds a static busybox, the kernel modules needed before the root can be
mounted (virtio PCI, 9p over virtio, overlayfs) in load order, and ``/init`` (below). It is
written as a plain ``newc`` cpio by this module (no ``cpio`` binary needed) and cached under
``<repo>/.vmcache/`` keyed by kernel version and a hash of this file, so a change to the
init script or to the kernel rebuilds it.

What ``/init`` does in the guest: mount proc/sys/dev, load the modules, mount the exchange
share (``xchg``), read ``boot.conf`` from it, mount the host root read-only (9p tag
``root``) under an overlay whose upper layer is a tmpfs, mount each writable share
(tags ``rw0``..) at its host path, move the exchange to its host path and ``switch_root``
into ``stage2.sh`` (written per run by ``run-in-vm``). Any failure powers the VM off; the
runner then reports the console log.

This module runs on the host only; it must not start the VM or touch anything but its cache.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import subprocess
from pathlib import Path

# Modules loaded by /init, each resolved with its dependencies by `modprobe --show-depends`.
EARLY_MODULES = ("virtio_pci", "9pnet_virtio", "9p", "overlay")

INIT_SCRIPT = r"""#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
fail() {
    echo "hadirector-vm: init failed: $*" >/dev/console
    poweroff -f
    sleep 10
}
mount -t proc proc /proc || fail "mount proc"
mount -t sysfs sysfs /sys || fail "mount sysfs"
mount -t devtmpfs devtmpfs /dev || fail "mount devtmpfs"
while read -r ko; do
    insmod "/modules/$ko" || fail "insmod $ko"
done </modules/order
P9="trans=virtio,version=9p2000.L,msize=512000"
mount -t 9p -o "$P9,cache=none" xchg /xchg || fail "mount exchange share"
. /xchg/boot.conf || fail "read boot.conf"
mount -t 9p -o "ro,$P9,cache=loose" root /lower || fail "mount host root"
mount -t tmpfs -o "size=$HD_TMPFS_SIZE,mode=0755" tmpfs /rw || fail "mount tmpfs"
mkdir -p /rw/upper /rw/work
mount -t overlay overlay -o lowerdir=/lower,upperdir=/rw/upper,workdir=/rw/work /newroot \
    || fail "mount overlay"
i=0
for dir in $HD_RW_DIRS; do
    mkdir -p "/newroot$dir" || fail "mkdir $dir"
    mount -t 9p -o "$P9,cache=none" "rw$i" "/newroot$dir" || fail "mount rw$i at $dir"
    i=$((i + 1))
done
mkdir -p "/newroot$HD_XCHG" || fail "mkdir $HD_XCHG"
mount --move /xchg "/newroot$HD_XCHG" || fail "move exchange"
umount /proc /sys
mount --move /dev /newroot/dev || fail "move /dev"
exec switch_root /newroot /bin/sh "$HD_XCHG/stage2.sh"
fail "switch_root"
"""


def kernel_versions() -> list[str]:
    """Kernel versions with both an image in /boot and modules with IPVS, newest first."""
    found = []
    for image in Path("/boot").glob("vmlinuz-*"):
        version = image.name.removeprefix("vmlinuz-")
        ipvs_dir = Path(f"/lib/modules/{version}/kernel/net/netfilter/ipvs")
        if any(ipvs_dir.glob("ip_vs.ko*")):
            found.append(version)
    return sorted(found, reverse=True)


def find_busybox() -> Path | None:
    """A statically linked busybox (Debian's busybox-static), or None."""
    for candidate in ("/bin/busybox", "/usr/bin/busybox"):
        path = Path(candidate)
        if path.exists() and b"statically linked" in _file_kind(path):
            return path
    which = shutil.which("busybox")
    if which and b"statically linked" in _file_kind(Path(which)):
        return Path(which)
    return None


def _file_kind(path: Path) -> bytes:
    # An ELF without a PT_INTERP program header is static; read it instead of using file(1).
    try:
        data = path.read_bytes()
    except OSError:
        return b""
    if data[:4] != b"\x7fELF" or data[4] != 2:
        return b""
    phoff = int.from_bytes(data[32:40], "little")
    phentsize = int.from_bytes(data[54:56], "little")
    phnum = int.from_bytes(data[56:58], "little")
    for index in range(phnum):
        offset = phoff + index * phentsize
        if int.from_bytes(data[offset : offset + 4], "little") == 3:  # PT_INTERP
            return b"dynamically linked"
    return b"statically linked"


def module_files(version: str) -> list[Path]:
    """The .ko files for EARLY_MODULES in load order, without duplicates."""
    ordered: list[Path] = []
    for name in EARLY_MODULES:
        out = subprocess.run(
            ["modprobe", "-S", version, "--show-depends", name],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        for line in out.splitlines():
            parts = line.split()
            if len(parts) >= 2 and parts[0] == "insmod":
                path = Path(parts[1])
                if path not in ordered:
                    ordered.append(path)
    return ordered


def _ko_bytes(path: Path) -> bytes:
    data = path.read_bytes()
    if path.suffix == ".xz":
        import lzma

        return lzma.decompress(data)
    if path.suffix == ".zst":
        return subprocess.run(["zstd", "-dc", str(path)], check=True, capture_output=True).stdout
    if path.suffix == ".gz":
        import gzip

        return gzip.decompress(data)
    return data


class _Cpio:
    """A minimal writer of the 'newc' cpio format the kernel unpacks."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.inode = 1

    def _entry(
        self, name: str, mode: int, data: bytes = b"", rdev: tuple[int, int] = (0, 0)
    ) -> None:
        fields = [
            self.inode,
            mode,
            0,  # uid
            0,  # gid
            1,  # nlink
            0,  # mtime
            len(data),
            0,
            0,  # dev major/minor
            rdev[0],
            rdev[1],
            len(name) + 1,
            0,  # check
        ]
        self.inode += 1
        header = "070701" + "".join(f"{value:08x}" for value in fields)
        blob = header.encode() + name.encode() + b"\0"
        blob += b"\0" * (-len(blob) % 4)
        blob += data + b"\0" * (-len(data) % 4)
        self.chunks.append(blob)

    def directory(self, name: str) -> None:
        self._entry(name, stat.S_IFDIR | 0o755)

    def file(self, name: str, data: bytes, perm: int = 0o644) -> None:
        self._entry(name, stat.S_IFREG | perm, data)

    def chardev(self, name: str, major: int, minor: int) -> None:
        self._entry(name, stat.S_IFCHR | 0o600, rdev=(major, minor))

    def finish(self) -> bytes:
        self._entry("TRAILER!!!", 0)
        data = b"".join(self.chunks)
        return data + b"\0" * (-len(data) % 512)


def builder_digest() -> str:
    """A short hash of this builder, part of the cache key."""
    return hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:12]


def build(version: str, cache_dir: Path, busybox: Path) -> Path:
    """Return the cached initramfs for ``version``, building it first if needed."""
    target = cache_dir / f"initramfs-{version}-{builder_digest()}.cpio"
    if target.exists():
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    archive = _Cpio()
    for directory in ("bin", "sbin", "dev", "proc", "sys", "lower", "rw", "newroot", "xchg"):
        archive.directory(directory)
    archive.directory("modules")
    archive.chardev("dev/console", 5, 1)
    archive.chardev("dev/null", 1, 3)
    archive.file("bin/busybox", busybox.read_bytes(), 0o755)
    order = []
    for index, path in enumerate(module_files(version)):
        name = f"{index:02d}-{path.name.split('.ko')[0]}.ko"
        archive.file(f"modules/{name}", _ko_bytes(path))
        order.append(name)
    archive.file("modules/order", ("\n".join(order) + "\n").encode())
    archive.file("init", INIT_SCRIPT.encode(), 0o755)
    temporary = target.with_suffix(f".tmp{os.getpid()}")
    temporary.write_bytes(archive.finish())
    temporary.replace(target)
    for stale in cache_dir.glob(f"initramfs-{version}-*.cpio"):
        if stale != target:
            stale.unlink(missing_ok=True)
    return target
