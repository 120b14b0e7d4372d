"""The guest's userland: an initramfs (newc cpio, gzip) built from layers and cached under
`var/e2e/image/` by a key over everything that goes in.

Why an initramfs and not a disk image: the kernel unpacks it into RAM by itself, so the guest
needs no block device, filesystem module or root= argument, and the host mounts nothing to
build it (`busybox cpio` packs a plain directory). Its layers: busybox (a static build, Debian's
`busybox-static`), the kernel modules the guest loads (virtio-mem, virtio-net for QEMU's
user-mode network, qemu_fw_cfg for the agent's configuration; with their dependencies from
modules.dep), Debian's Python and the guest agent (`e2e.userland`), and `guest/init.sh`."""

from __future__ import annotations

import gzip
import hashlib
import lzma
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from e2e.kernel import Kernel
from e2e.system import Say

#: Bump when the layout changes in a way the inputs' hashes cannot see.
IMAGE_FORMAT = 1
GUEST = Path(__file__).resolve().parent / "guest"
BUSYBOX = Path("/bin/busybox")
#: The PCI transport, the virtio-mem driver, the network card of QEMU's user-mode network and
#: the fw_cfg files (the agent's URL and token); dependencies are resolved from modules.dep.
MODULES = ["virtio_pci", "virtio_mem", "virtio_net", "qemu_fw_cfg"]


@dataclass(frozen=True)
class Layer:
    """Files added to the image root; `key` changes whenever what `add` writes would."""

    name: str
    key: bytes
    add: Callable[[Path], None]


def busybox_layer() -> Layer:
    def add(root: Path) -> None:
        for d in ("bin", "dev", "proc", "sys", "etc/nb-e2e", "lib/modules"):
            (root / d).mkdir(parents=True, exist_ok=True)
        shutil.copy2(BUSYBOX, root / "bin" / "busybox")

    return Layer("busybox", _digest(BUSYBOX.read_bytes()), add)


def modules_layer(kernel: Kernel, names: Sequence[str] = MODULES) -> Layer:
    """The modules, plain `.ko` (busybox's insmod reads no compressed module), and the order to
    load them in `/etc/nb-e2e/modules`."""
    files = kernel.module_files(list(names))

    def add(root: Path) -> None:
        order = []
        for path in files:
            name = path.name.split(".ko", 1)[0] + ".ko"
            data = path.read_bytes()
            if path.name.endswith(".ko.xz"):
                data = lzma.decompress(data)
            elif not path.name.endswith(".ko"):
                raise RuntimeError(f"{path}: a compression busybox cannot load")
            (root / "lib" / "modules" / name).write_bytes(data)
            order.append(name)
        (root / "etc" / "nb-e2e" / "modules").write_text("".join(f"{n}\n" for n in order))

    key = f"{kernel.package} {kernel.version} {' '.join(p.name for p in files)}".encode()
    return Layer("modules", key, add)


def init_layer() -> Layer:
    script = (GUEST / "init.sh").read_bytes()

    def add(root: Path) -> None:
        (root / "init").write_bytes(script)
        (root / "init").chmod(0o755)

    return Layer("init", _digest(script), add)


def tree_layer(name: str, tree: Path) -> Layer:
    """A directory tree of the cache (`e2e.userland`) copied to the image root; its name is
    its key (the cache names each tree by a digest of what is in it)."""

    def add(root: Path) -> None:
        shutil.copytree(tree, root, symlinks=True, dirs_exist_ok=True, ignore=_MARKERS)

    return Layer(name, tree.name.encode(), add)


_MARKERS = shutil.ignore_patterns(".complete")


def default_layers(kernel: Kernel, python: Path, agent: Path) -> list[Layer]:
    return [
        busybox_layer(),
        modules_layer(kernel),
        tree_layer("python", python),
        tree_layer("agent", agent),
        init_layer(),
    ]


def _digest(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def image_key(layers: Sequence[Layer]) -> str:
    h = hashlib.sha256(f"format {IMAGE_FORMAT}\n".encode())
    for layer in layers:
        h.update(layer.name.encode() + b"\0" + layer.key + b"\0")
    return h.hexdigest()[:20]


def build(layers: Sequence[Layer], cache: Path, say: Say) -> Path:
    """The initramfs of `layers`, from the cache or built into it."""
    target = cache / f"initrd-{image_key(layers)}.gz"
    if target.exists():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache, prefix=".build-") as tmp:
        root = Path(tmp) / "root"
        root.mkdir()
        for layer in layers:
            layer.add(root)
        names = sorted(
            os.path.relpath(os.path.join(d, f), root)
            for d, dirs, files in os.walk(root)
            for f in dirs + files
        )
        cpio = subprocess.run(
            [str(BUSYBOX), "cpio", "-o", "-H", "newc"],
            input="\n".join(names).encode(),
            cwd=root,
            capture_output=True,
            check=False,
        )
        if cpio.returncode != 0:
            raise RuntimeError(f"busybox cpio: {cpio.stderr.decode(errors='replace')}")
        partial = Path(tmp) / "initrd.gz"
        partial.write_bytes(gzip.compress(cpio.stdout, compresslevel=6, mtime=0))
        partial.rename(target)
    for old in cache.glob("initrd-*.gz"):  # images of earlier layers: nothing boots them now
        if old != target:
            old.unlink(missing_ok=True)
    say(f"guest image {target.name} built ({target.stat().st_size // 1024} KiB)")
    return target
