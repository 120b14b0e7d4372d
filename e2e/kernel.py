"""Debian's own kernel for the guest, never installed on the host: the package `linux-image-amd64`
depends on (the current ABI), fetched with `apt-get download`, unpacked with `dpkg-deb -x` and
indexed with `depmod -b` (the package ships no modules.dep; its postinst would make one) under
`var/e2e/kernel/<package>_<version>/`. A second run finds it there and asks apt nothing more than
which version is current."""

from __future__ import annotations

import lzma
import re
import shutil
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path

from e2e.system import Say, run

META_PACKAGE = "linux-image-amd64"
_DONE = ".unpacked"


@dataclass(frozen=True)
class Kernel:
    package: str
    version: str
    release: str  # the module directory's name, e.g. 6.1.0-57-amd64
    root: Path

    @property
    def vmlinuz(self) -> Path:
        return self.root / "boot" / f"vmlinuz-{self.release}"

    def boot_image(self) -> Path:
        """What QEMU is given as the kernel: the uncompressed ELF when the kernel has a PVH entry
        (CONFIG_PVH), which QEMU boots directly, so the guest skips the bzImage's decompressor
        (xz, emulated instruction by instruction under TCG: ~15 s of a busy machine's boot);
        else the bzImage. Extracted once, next to the package's files."""
        elf = self.root / "boot" / f"vmlinux-{self.release}"
        if elf.exists():
            return elf
        if self.config("PVH") != "y":
            return self.vmlinuz
        payload = _decompressed_payload(self.vmlinuz.read_bytes())
        if payload is None:
            return self.vmlinuz
        partial = elf.with_suffix(".partial")
        partial.write_bytes(payload)
        partial.rename(elf)
        return elf

    @property
    def modules(self) -> Path:
        return self.root / "lib" / "modules" / self.release

    def config(self, option: str) -> str | None:
        """`CONFIG_<option>` of the kernel's build configuration (`y`, `m`, ...), None if unset."""
        pattern = re.compile(rf"^CONFIG_{re.escape(option)}=(.*)$", re.M)
        text = (self.root / "boot" / f"config-{self.release}").read_text()
        found = pattern.search(text)
        return None if found is None else found.group(1)

    def module_files(self, names: list[str]) -> list[Path]:
        """The modules `names` need, dependencies first (from modules.dep), each once; a module
        built into the kernel needs no file."""
        deps: dict[str, list[str]] = {}
        for line in (self.modules / "modules.dep").read_text().splitlines():
            path, _, rest = line.partition(":")
            deps[path] = rest.split()
        by_name = {_module_name(p): p for p in deps}
        builtin = {_module_name(p) for p in (self.modules / "modules.builtin").read_text().split()}
        order: list[str] = []

        def visit(path: str) -> None:
            if path in order:
                return
            for dep in deps[path]:
                visit(dep)
            order.append(path)

        for name in names:
            key = name.replace("-", "_")
            if key in by_name:
                visit(by_name[key])
            elif key not in builtin:
                raise RuntimeError(f"kernel {self.release} has no module {name}")
        return [self.modules / p for p in order]


def _decompressed_payload(bzimage: bytes) -> bytes | None:
    """The ELF kernel inside a bzImage compressed with xz or gzip (what the kernel's own
    scripts/extract-vmlinux finds), None for another compression."""
    for magic, decompressor in (
        (b"\xfd7zXZ\x00", lzma.LZMADecompressor),
        (b"\x1f\x8b\x08", lambda: zlib.decompressobj(16 + zlib.MAX_WBITS)),
    ):
        at = bzimage.find(magic)
        if at < 0:
            continue
        try:
            out = decompressor().decompress(bzimage[at:])
        except (lzma.LZMAError, zlib.error):
            continue
        if out.startswith(b"\x7fELF"):
            return out
    return None


def _module_name(path: str) -> str:
    base = path.rsplit("/", 1)[-1]
    return base.split(".ko", 1)[0].replace("-", "_")


def current_package() -> tuple[str, str] | None:
    """(package, version) of the kernel image `linux-image-amd64` depends on, per apt's lists."""
    try:
        depends = run(["apt-cache", "depends", META_PACKAGE])
    except RuntimeError:
        return None
    found = re.search(r"Depends: (linux-image-\d\S*)", depends)
    if found is None:
        return None
    package = found.group(1)
    policy = run(["apt-cache", "policy", package])
    version = re.search(r"Candidate: (\S+)", policy)
    if version is None or version.group(1) == "(none)":
        return None
    return package, version.group(1)


def fetch(cache: Path, say: Say) -> Kernel:
    """The current Debian kernel, unpacked under `cache` (downloaded only the first time)."""
    wanted = current_package()
    if wanted is None:
        run(["apt-get", "update", "-qq"])
        wanted = current_package()
    if wanted is None:
        raise RuntimeError(f"apt knows no kernel package behind {META_PACKAGE}")
    package, version = wanted
    target = cache / f"{package}_{version}"
    if not (target / _DONE).exists():
        say(f"downloading the guest kernel {package} {version} (apt-get download, dpkg-deb -x)")
        _unpack(package, version, target)
    releases = [p.name for p in (target / "lib" / "modules").iterdir()]
    if len(releases) != 1:
        raise RuntimeError(f"{target}: expected one module directory, found {releases}")
    return Kernel(package, version, releases[0], target)


def _unpack(package: str, version: str, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".download-") as tmp:
        work = Path(tmp)
        # apt-get download writes to the working directory; as root it warns that the
        # unprivileged _apt user cannot write there, which is harmless.
        run(["apt-get", "download", "-q", f"{package}={version}"], cwd=work)
        debs = list(work.glob("*.deb"))
        if len(debs) != 1:
            raise RuntimeError(f"apt-get download {package}: got {debs}")
        root = work / "root"
        run(["dpkg-deb", "-x", str(debs[0]), str(root)])
        release = next((root / "lib" / "modules").iterdir()).name
        run(["depmod", "-b", str(root), release])
        (root / _DONE).write_text(f"{package} {version}\n")
        if target.exists():
            shutil.rmtree(target)
        root.rename(target)
