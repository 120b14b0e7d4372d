"""Which machine this is, as a host's `external_id`: how a host agent finds the host that
`numa-balloon hosts register --from-sysfs` (or an earlier agent) registered for this machine.

The id is systemd's application-specific machine id (`sd_id128_get_machine_app_specific`, what
`systemd-id128 machine-id --app-specific=95125cfc24784d2db082fffd57ae641b` prints): an HMAC of
/etc/machine-id keyed by it, so the service never holds the machine id itself, which systemd
asks to keep confidential (machine-id(5)). It is stable for the life of the installation, the
same for every tool that runs on the machine, and different on every machine.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from pathlib import Path

#: numa-balloon's application id for systemd's app-specific machine ids (fixed forever).
APP_ID = "95125cfc24784d2db082fffd57ae641b"
PREFIX = "machine:"
_ID128 = re.compile(r"^[0-9a-f]{32}$")


def app_specific_id(machine_id: str, app_id: str = APP_ID) -> str:
    """systemd's derivation: HMAC-SHA256(key=machine id, message=app id), the first 16 bytes
    made a version-4 UUID; 32 hex digits, as `systemd-id128` prints it."""
    digest = hmac.new(bytes.fromhex(machine_id), bytes.fromhex(app_id), hashlib.sha256).digest()
    out = bytearray(digest[:16])
    out[6] = (out[6] & 0x0F) | 0x40
    out[8] = (out[8] & 0x3F) | 0x80
    return out.hex()


def machine_id(path: Path | str) -> str | None:
    """The 128-bit id in a machine-id file, or None when it is absent, empty or not one
    (`uninitialized`, on a first boot, is not an id)."""
    try:
        value = Path(path).read_text().strip().lower()
    except OSError:
        return None
    return value if _ID128.match(value) else None


def external_id(machine_id_file: Path | str = "/etc/machine-id") -> str | None:
    """`machine:<app-specific id>` for the machine whose machine-id file this is."""
    value = machine_id(machine_id_file)
    return None if value is None else PREFIX + app_specific_id(value)


def tree_external_id(root: Path | str) -> str | None:
    """The machine a filesystem tree describes: `<root>/etc/machine-id` (`/` is this one)."""
    return external_id(Path(root) / "etc/machine-id")
