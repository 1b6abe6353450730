"""Network definitions: CNI configuration lists in the ``cni_config_dir``.

A network is a ``.conflist`` file; its name is the list's ``name``. Single-plugin ``.conf`` /
``.json`` files are read too (wrapped into a one-plugin list), as libcni does. Files are
scanned in name order and the first file with a given network name wins. kpod's own
metadata (labels, creation time, options) lives under the list's top-level ``args`` key,
which CNI never hands to plugins.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import json
import os
import sys
from typing import Any

from libpod_core.errors import AlreadyExists, InvalidArgument, NetworkError, NotFound
from libpod_core.lazyre import lazy
from libpod_core.log import getLogger

log = getLogger(__name__)

CONF_EXTS = (".conflist", ".conf", ".json")
NAME_RE = lazy(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")
IFNAME_RE = lazy(r"^(?!\.\.?$)[a-zA-Z0-9_.-]{1,15}$")
# Names that are network modes, not networks (podman refuses them too).
RESERVED_NAMES = frozenset({"none", "host", "bridge", "private", "container", "ns", "slirp4netns", "pasta"})
CNI_VERSION = "1.0.0"
SUPPORTED_DRIVERS = ("bridge", "macvlan")
#: podman's search domain for container names (the dnsname plugin's ``domainName``)
DNS_DOMAIN = "dns.podman"
#: the CNI plugin that serves container names (a dnsmasq per network)
DNS_PLUGIN = "dnsname"


class Network:
    """One network: its name, the file defining it and the configuration list.

    A plain class with what ``@dataclass`` generated (init, repr, eq; unhashable): every
    ``create`` and ``run`` loads this module, and the dataclass machinery (for this class
    and :class:`Scan`) costs over half a millisecond of start-up."""

    __match_args__ = ("name", "file", "conflist")
    __hash__ = None  # type: ignore[assignment]

    def __init__(self, name: str, file: str, conflist: dict) -> None:
        self.name = name
        self.file = file
        self.conflist = conflist

    def __repr__(self) -> str:
        return f"{self.__class__.__qualname__}(name={self.name!r}, file={self.file!r}, conflist={self.conflist!r})"

    def __eq__(self, other: object) -> bool:
        if other.__class__ is self.__class__:
            return (self.name, self.file, self.conflist) == (other.name, other.file, other.conflist)  # type: ignore[attr-defined]
        return NotImplemented

    @property
    def plugins(self) -> list[dict]:
        return self.conflist["plugins"]

    @property
    def main(self) -> dict:
        return self.plugins[0]

    @property
    def driver(self) -> str:
        return self.main.get("type", "")

    @property
    def id(self) -> str:
        """sha256 of the name (podman's network ID for CNI networks)."""
        args = self.kpod_args
        if args.get("kpod_id_of") == self.name and isinstance(args.get("kpod_id"), str):
            return args["kpod_id"]
        return network_id(self.name)

    @property
    def kpod_args(self) -> dict:
        args = self.conflist.get("args")
        return args if isinstance(args, dict) else {}

    @property
    def dns_enabled(self) -> bool:
        """True when the list runs the dnsname plugin (a dnsmasq answers container names)."""
        return any(p.get("type") == DNS_PLUGIN for p in self.plugins)

    @property
    def interface(self) -> str:
        if self.driver == "bridge":
            return self.main.get("bridge") or "cni0"  # the bridge plugin's own default
        if self.driver in ("macvlan", "ipvlan"):
            return self.main.get("master") or ""
        return ""

    def ipam(self) -> dict:
        ipam = self.main.get("ipam")
        return ipam if isinstance(ipam, dict) else {}

    def ranges(self) -> list[dict]:
        """Every host-local style range (``ranges`` or the older top-level ``subnet``)."""
        ipam = self.ipam()
        out = []
        for rset in ipam.get("ranges") or []:
            if isinstance(rset, list):
                out.extend(r for r in rset if isinstance(r, dict) and r.get("subnet"))
        if not out and ipam.get("subnet"):
            out.append({k: ipam[k] for k in ("subnet", "gateway", "rangeStart", "rangeEnd") if ipam.get(k)})
        return out

    def subnets(self) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        nets = []
        for r in self.ranges():
            try:
                nets.append(ipaddress.ip_network(r["subnet"], strict=False))
            except ValueError:
                pass
        return nets

    def internal(self) -> bool:
        if "kpod_internal" in self.kpod_args:
            return bool(self.kpod_args["kpod_internal"])
        if self.driver == "bridge":
            return not self.main.get("isGateway") and not self.main.get("ipMasq")
        return False

    def created(self) -> str:
        created = self.kpod_args.get("kpod_created")
        if isinstance(created, str) and created:
            return created
        import datetime as _dt

        try:
            mtime = os.stat(self.file).st_mtime
        except OSError:
            mtime = 0
        return _dt.datetime.fromtimestamp(mtime, _dt.timezone.utc).isoformat()

    def to_dict(self) -> dict:
        subnets = []
        for r in self.ranges():
            entry = {"subnet": str(ipaddress.ip_network(r["subnet"], strict=False)) if _valid_net(r["subnet"]) else r["subnet"]}
            if r.get("gateway"):
                entry["gateway"] = r["gateway"]
            if r.get("rangeStart") or r.get("rangeEnd"):
                entry["lease_range"] = {"start_ip": r.get("rangeStart", ""), "end_ip": r.get("rangeEnd", "")}
            subnets.append(entry)
        labels = self.kpod_args.get("kpod_labels")
        options = self.kpod_args.get("kpod_options")
        ipam = self.ipam()
        return {
            "name": self.name,
            "id": self.id,
            "driver": self.driver,
            "network_interface": self.interface,
            "created": self.created(),
            "subnets": subnets,
            "ipv6_enabled": any(n.version == 6 for n in self.subnets()),
            "internal": self.internal(),
            "dns_enabled": self.dns_enabled,
            "labels": dict(labels) if isinstance(labels, dict) else {},
            "options": dict(options) if isinstance(options, dict) else {},
            "ipam_options": {"driver": ipam.get("type", "")} if ipam else {},
            "plugins": [p.get("type", "") for p in self.plugins],
            "cni_version": self.conflist.get("cniVersion", ""),
            "file": self.file,
        }


def _valid_net(s: Any) -> bool:
    try:
        ipaddress.ip_network(s, strict=False)
        return True
    except (ValueError, TypeError):
        return False


def network_id(name: str) -> str:
    # CPython's own SHA-256 (module _sha2 since 3.12, _sha256 before) loads in 0.2 ms;
    # hashlib loads OpenSSL's libcrypto first, 3 ms of every create. The digest is the same.
    try:
        if sys.version_info >= (3, 12):
            from _sha2 import sha256
        else:
            from _sha256 import sha256
    except ImportError:  # an interpreter built without them
        from hashlib import sha256
    return sha256(name.encode()).hexdigest()


def validate_name(name: Any) -> str:
    if not isinstance(name, str) or not NAME_RE.match(name) or len(name) > 253:
        raise InvalidArgument(f"invalid network name {name!r}: names must match [a-zA-Z0-9][a-zA-Z0-9_.-]*")
    if name in RESERVED_NAMES:
        raise InvalidArgument(f"invalid network name {name!r}: it is a network mode, not a network")
    return name


def parse_conflist(path: str, data: bytes) -> dict:
    """Validate a configuration file's bytes; return it as a configuration list.

    Raises ValueError with a short reason.
    """
    try:
        doc = json.loads(data)
    except ValueError as exc:
        raise ValueError(f"invalid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise ValueError("not a JSON object")
    if not path.endswith(".conflist") and "plugins" not in doc:
        # a single plugin configuration: wrap it the way libcni does
        plugin = {k: v for k, v in doc.items() if k not in ("name", "cniVersion")}
        doc = {"cniVersion": doc.get("cniVersion"), "name": doc.get("name"), "plugins": [plugin]}
    name = doc.get("name")
    if not isinstance(name, str) or not name:
        raise ValueError("missing network name ('name')")
    if not isinstance(doc.get("cniVersion"), str) or not doc["cniVersion"]:
        raise ValueError("missing 'cniVersion'")
    plugins = doc.get("plugins")
    if not isinstance(plugins, list) or not plugins:
        raise ValueError("'plugins' must be a non-empty list")
    for i, p in enumerate(plugins):
        if not isinstance(p, dict) or not isinstance(p.get("type"), str) or not p["type"]:
            raise ValueError(f"plugin {i} has no 'type'")
    return doc


class Scan:
    """What a scan of the configuration directory found (a plain class, as :class:`Network`)."""

    __match_args__ = ("networks", "bad")
    __hash__ = None  # type: ignore[assignment]

    def __init__(self, networks: dict[str, Network] | None = None, bad: dict[str, tuple[str, str]] | None = None) -> None:
        self.networks: dict[str, Network] = {} if networks is None else networks
        # file name -> (network name it seems to be for, reason)
        self.bad: dict[str, tuple[str, str]] = {} if bad is None else bad

    def __repr__(self) -> str:
        return f"{self.__class__.__qualname__}(networks={self.networks!r}, bad={self.bad!r})"

    def __eq__(self, other: object) -> bool:
        if other.__class__ is self.__class__:
            return (self.networks, self.bad) == (other.networks, other.bad)  # type: ignore[attr-defined]
        return NotImplemented


class NetworkStore:
    def __init__(self, config_dir: str):
        self.config_dir = config_dir

    def scan(self) -> Scan:
        scan = Scan()
        try:
            names = sorted(os.listdir(self.config_dir))
        except FileNotFoundError:
            return scan
        except OSError as exc:
            raise NetworkError(f"cannot read CNI config directory {self.config_dir}: {exc.strerror}") from None
        for fname in names:
            if fname.startswith(".") or not fname.endswith(CONF_EXTS):
                continue
            path = os.path.join(self.config_dir, fname)
            if not os.path.isfile(path):
                continue
            stem = fname.rsplit(".", 1)[0]
            try:
                with open(path, "rb") as f:
                    data = f.read()
                conflist = parse_conflist(path, data)
            except OSError as exc:
                scan.bad[fname] = (stem, exc.strerror or str(exc))
                continue
            except ValueError as exc:
                guess = stem
                try:
                    raw = json.loads(data)
                    if isinstance(raw, dict) and isinstance(raw.get("name"), str) and raw["name"]:
                        guess = raw["name"]
                except ValueError:
                    pass
                scan.bad[fname] = (guess, str(exc))
                continue
            name = conflist["name"]
            if name in scan.networks:
                log.warning("CNI config %s: network %s is already defined by %s; ignored", path, name, scan.networks[name].file)
                continue
            scan.networks[name] = Network(name, path, conflist)
        return scan

    def get(self, name: str, scan: Scan | None = None) -> Network:
        scan = scan or self.scan()
        net = scan.networks.get(name)
        if net is not None:
            return net
        self.raise_if_malformed(name, scan)
        raise NotFound(f"network {name}: no such network")

    def raise_if_malformed(self, name: str, scan: Scan) -> None:
        for fname, (guess, reason) in scan.bad.items():
            if guess == name or fname.rsplit(".", 1)[0] == name:
                raise NetworkError(f"network {name}: malformed CNI config {os.path.join(self.config_dir, fname)}: {reason}")

    @contextlib.contextmanager
    def lock(self):
        """Serialise creations and removals among kpod processes sharing the directory."""
        try:
            os.makedirs(self.config_dir, mode=0o755, exist_ok=True)
            fd = os.open(self.config_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as exc:
            raise NetworkError(f"CNI config directory {self.config_dir}: {exc.strerror or exc}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def write_new(self, conflist: dict) -> str:
        """Write ``<name>.conflist`` atomically; AlreadyExists if the file exists."""
        path = os.path.join(self.config_dir, conflist["name"] + ".conflist")
        import tempfile

        try:
            os.makedirs(self.config_dir, mode=0o755, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".kpod", dir=self.config_dir)
        except OSError as exc:
            raise NetworkError(f"cannot write network {conflist['name']} into {self.config_dir}: {exc.strerror or exc}") from None
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(conflist, f, indent=2)
                f.write("\n")
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o644)
            try:
                os.link(tmp, path)  # atomic, and never replaces an existing file
            except FileExistsError:
                raise AlreadyExists(f"network {conflist['name']}: file {path} already exists") from None
        finally:
            try:
                os.unlink(tmp)
            except OSError:
                pass
        return path


# -- building configurations ----------------------------------------------------------
def now_rfc3339() -> str:
    import datetime as _dt

    return _dt.datetime.now(_dt.timezone.utc).isoformat()


def build_conflist(
    name: str,
    *,
    driver: str,
    ranges: list[dict],
    internal: bool,
    interface: str,
    ipam_dir: str,
    tuning_dir: str,
    labels: dict[str, str],
    options: dict[str, Any],
    mtu: int | None = None,
    mode: str | None = None,
    dns: bool = False,
) -> dict:
    """A configuration list like podman's (CNI backend): bridge, portmap, firewall, tuning
    and, with *dns* (bridge only), dnsname. An internal network with DNS keeps the gateway
    address on the bridge (dnsmasq listens there) but gets no route and no masquerading."""
    routes = []
    if not internal:
        fams = {ipaddress.ip_network(r["subnet"], strict=False).version for r in ranges}
        routes = [{"dst": "0.0.0.0/0"}] * (4 in fams) + [{"dst": "::/0"}] * (6 in fams)
    ipam: dict[str, Any] = {"type": "host-local", "dataDir": ipam_dir, "ranges": [[r] for r in ranges]}
    if routes:
        ipam["routes"] = routes
    plugins: list[dict[str, Any]]
    if driver == "bridge":
        main: dict[str, Any] = {
            "type": "bridge",
            "bridge": interface,
            "isGateway": not internal or dns,
            "ipMasq": not internal,
            "hairpinMode": True,
            "capabilities": {"ips": True, "mac": True},
        }
        if mtu:
            main["mtu"] = mtu
        main["ipam"] = ipam
        plugins = [
            main,
            {"type": "portmap", "snat": True, "capabilities": {"portMappings": True}},
            {"type": "firewall"},
            {"type": "tuning", "dataDir": tuning_dir},
        ]
        if dns:
            plugins.append({"type": DNS_PLUGIN, "domainName": DNS_DOMAIN, "capabilities": {"aliases": True}})
    elif driver == "macvlan":
        main = {"type": "macvlan", "master": interface, "mode": mode or "bridge", "capabilities": {"ips": True, "mac": True}}
        if mtu:
            main["mtu"] = mtu
        main["ipam"] = ipam
        plugins = [main, {"type": "tuning", "dataDir": tuning_dir}]
    else:  # pragma: no cover - checked by the caller
        raise InvalidArgument(f"unsupported network driver {driver!r}")
    return {
        "cniVersion": CNI_VERSION,
        "name": name,
        "plugins": plugins,
        "args": {
            "kpod_labels": labels,
            "kpod_options": options,
            "kpod_internal": internal,
            "kpod_created": now_rfc3339(),
            # its ID, so that reading the network needs no hashlib (OpenSSL's start-up is
            # ~2 ms of a container create); used while the name is still the one it was made for
            "kpod_id": network_id(name),
            "kpod_id_of": name,
        },
    }


def host_interfaces() -> set[str]:
    try:
        return set(os.listdir("/sys/class/net"))
    except OSError:
        return set()


def is_bridge(ifname: str) -> bool:
    return os.path.isdir(f"/sys/class/net/{ifname}/bridge")


def bridge_ports(ifname: str) -> list[str]:
    try:
        return os.listdir(f"/sys/class/net/{ifname}/brif")
    except OSError:
        return []


def default_route_interface() -> str | None:
    try:
        with open("/proc/net/route", encoding="ascii") as f:
            next(f, None)
            for line in f:
                parts = line.split()
                if len(parts) > 7 and parts[1] == "00000000" and parts[7] == "00000000":
                    return parts[0]
    except OSError:
        pass
    return None


def host_addresses() -> list[ipaddress.IPv4Interface | ipaddress.IPv6Interface]:
    """Addresses configured on the host's interfaces (to avoid picking a used subnet)."""
    try:
        from pyroute2 import IPRoute
    except ImportError:  # pragma: no cover
        return []
    out = []
    try:
        with IPRoute() as ipr:
            for msg in ipr.get_addr():
                addr = msg.get_attr("IFA_ADDRESS") or msg.get_attr("IFA_LOCAL")
                if addr:
                    with contextlib.suppress(ValueError):
                        out.append(ipaddress.ip_interface(f"{addr}/{msg['prefixlen']}"))
    except Exception as exc:  # noqa: BLE001 - best effort only
        log.debug("cannot list host addresses: %s", exc)
    return out
