"""kpod network backend running the real CNI plugins (``kpod.network`` entry point ``cni``).

Layout on disk (all movable through the configuration):

* ``<cni_config_dir>/<name>.conflist`` — one file per network (CNI configuration lists).
* ``<runroot>/netns/<name>`` — persistent network namespaces (bind mounts).
* ``<runroot>/cni/results/<network>-<container>-<ifname>`` — cached ADD results (libcni's
  cache idea): DEL and CHECK use the configuration and result recorded at ADD time.
* ``<runroot>/cni/ipam`` — host-local IPAM leases of the networks kpod writes; per-boot, like
  the namespaces and interfaces they belong to.
* ``<runroot>/cni/dns/containers/cni/dnsname/<network>/`` — the dnsname plugin's files for a
  network with DNS (``dnsmasq.conf``, ``addnhosts``, ``pidfile`` of its dnsmasq). The plugin
  is run with ``XDG_RUNTIME_DIR=<runroot>/cni/dns`` (its default is the host-wide
  /run/containers/cni/dnsname), so two stores with a network of the same name never share
  a dnsmasq.

Importing this module is cheap: pyroute2 is imported only where it is needed.
"""

from __future__ import annotations

import ipaddress
import os
import re
from typing import Any, Iterable

import pluggy

from libpod_core.errors import AlreadyExists, InvalidArgument, KpodError, NetworkError, NotFound
from libpod_core.lazyre import lazy
from libpod_core.log import getLogger

from . import netns as _netns
from .cni import CNIExecutor, normalize_result, version_tuple
from .networks import (
    DNS_PLUGIN,
    IFNAME_RE,
    SUPPORTED_DRIVERS,
    Network,
    NetworkStore,
    build_conflist,
    bridge_ports,
    default_route_interface,
    host_addresses,
    host_interfaces,
    is_bridge,
    network_id,
    validate_name,
)

__all__ = ["CNIBackend"]

hookimpl = pluggy.HookimplMarker("kpod")
log = getLogger(__name__)

PROTOCOLS = ("tcp", "udp", "sctp")
CONTAINER_ID_RE = lazy(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")  # CNI_CONTAINERID (spec 1.0)
MACVLAN_MODES = ("bridge", "private", "vepa", "passthru")


class CNIBackend:
    """The ``cni`` network driver."""

    name = "cni"
    #: the default network's parameters (podman's are cni-podman0 / 10.88.0.0/16)
    default_bridge = "kpod0"
    default_subnet = "10.88.0.0/16"
    #: new networks without a subnet get the first free /24 of this pool
    subnet_pool = "10.89.0.0/16"
    #: new bridges without a name get <prefix>N, N >= 1
    bridge_prefix = "kpod"
    #: seconds one plugin may run
    plugin_timeout = 60.0

    def __init__(self, config) -> None:
        self.config = config
        self.config_dir = config.cni_config_dir
        self.plugin_dirs = list(config.cni_plugin_dirs)
        self.runroot = config.runroot
        self.netns_dir = os.path.join(self.runroot, "netns")
        self.cni_dir = os.path.join(self.runroot, "cni")
        self.cache_dir = os.path.join(self.cni_dir, "results")
        self.ipam_dir = os.path.join(self.cni_dir, "ipam")
        self.tuning_dir = os.path.join(self.cni_dir, "tuning")
        #: XDG_RUNTIME_DIR of the dnsname plugin (it keeps <this>/containers/cni/dnsname/<network>)
        self.dns_runtime_dir = os.path.join(self.cni_dir, "dns")
        # settings the configuration may grow; class defaults otherwise
        for key in ("default_subnet", "default_bridge"):
            value = getattr(config, key, None) if key in getattr(config, "_values", {}) else None
            if value:
                setattr(self, key, value)
        self.store = NetworkStore(self.config_dir)
        self._executor: CNIExecutor | None = None

    @property
    def executor(self) -> CNIExecutor:
        ex = self._executor
        if ex is None or (ex.plugin_dirs, ex.cache_dir, ex.timeout) != (list(self.plugin_dirs), self.cache_dir, self.plugin_timeout):
            ex = self._executor = CNIExecutor(self.plugin_dirs, self.cache_dir, self.plugin_timeout,
                                              plugin_env={DNS_PLUGIN: {"XDG_RUNTIME_DIR": self.dns_runtime_dir}})
        return ex

    def dns_dir(self, network: str) -> str:
        """Where the dnsname plugin keeps *network*'s dnsmasq files."""
        return os.path.join(self.dns_runtime_dir, "containers", "cni", "dnsname", network)

    # ==================================================================================
    # network namespaces
    # ==================================================================================
    @hookimpl
    def network_netns_create(self, name):
        if not isinstance(name, str) or not name or "/" in name or name in (".", "..") or "\0" in name:
            raise InvalidArgument(f"invalid network namespace name {name!r}")
        path = os.path.join(self.netns_dir, name)
        try:
            return _netns.create(path)
        except FileExistsError:
            raise AlreadyExists(f"network namespace {path} already exists") from None
        except OSError as exc:
            raise NetworkError(f"creating network namespace {path}: {exc.strerror or exc}") from None

    @hookimpl
    def network_netns_remove(self, path):
        if not path:
            return True
        path = os.path.abspath(path)
        ours = os.path.dirname(path) == os.path.abspath(self.netns_dir)
        if not ours and os.path.lexists(path) and not _netns.is_netns(path):
            raise InvalidArgument(f"{path} is not a network namespace made by kpod")
        try:
            return _netns.remove(path, tidy_dir=ours)
        except OSError as exc:
            raise NetworkError(f"removing network namespace {path}: {exc.strerror or exc}") from None

    # ==================================================================================
    # attach / detach (CNI ADD / DEL / CHECK)
    # ==================================================================================
    @staticmethod
    def _network_items(networks) -> list[tuple[str, dict]]:
        if not networks:
            return []
        if isinstance(networks, dict):
            return [(n, dict(o or {})) for n, o in networks.items()]
        if isinstance(networks, str):
            return [(networks, {})]
        return [(n, {}) for n in networks]

    @staticmethod
    def _ifnames(items: list[tuple[str, dict]], taken: Iterable[str] = ()) -> list[str]:
        explicit = {o.get("interface_name") for _, o in items if o.get("interface_name")} | set(taken)
        out, n = [], 0
        for _, opts in items:
            name = opts.get("interface_name")
            if name:
                if not IFNAME_RE.match(name):
                    raise InvalidArgument(f"invalid interface name {name!r}")
                out.append(name)
                continue
            while f"eth{n}" in explicit:
                n += 1
            out.append(f"eth{n}")
            n += 1
        return out

    @staticmethod
    def _port_mappings(port_mappings) -> list[dict]:
        out = []
        for pm in port_mappings or []:
            if not isinstance(pm, dict):
                raise InvalidArgument(f"invalid port mapping {pm!r}")
            proto = str(pm.get("protocol") or "tcp").lower()
            try:
                cport = int(pm["container_port"])
                hport = int(pm.get("host_port") or cport)
                count = int(pm.get("range") or 1)
            except (KeyError, TypeError, ValueError):
                raise InvalidArgument(f"invalid port mapping {pm!r}: needs numeric container_port and host_port") from None
            host_ip = pm.get("host_ip") or ""
            if host_ip:
                try:
                    host_ip = str(ipaddress.ip_address(host_ip))
                except ValueError:
                    raise InvalidArgument(f"invalid port mapping {pm!r}: bad host_ip") from None
            for p in proto.split(","):
                if p not in PROTOCOLS:
                    raise InvalidArgument(f"invalid port mapping {pm!r}: protocol must be one of {', '.join(PROTOCOLS)}")
                for i in range(count):
                    if not (1 <= cport + i <= 65535 and 1 <= hport + i <= 65535):
                        raise InvalidArgument(f"invalid port mapping {pm!r}: ports must be 1-65535")
                    entry = {"hostPort": hport + i, "containerPort": cport + i, "protocol": p}
                    if host_ip:
                        entry["hostIP"] = host_ip
                    out.append(entry)
        return out

    @staticmethod
    def _requested_ips(name: str, opts: dict) -> list[str]:
        raw = opts.get("ips") or opts.get("ip") or opts.get("static_ips") or []
        if isinstance(raw, str):
            raw = [raw]
        out = []
        for ip in raw:
            if not ip:
                continue
            try:
                out.append(str(ipaddress.ip_interface(ip).ip))
            except ValueError:
                raise InvalidArgument(f"network {name}: invalid IP address {ip!r}") from None
        return out

    def _attach_args(self, net: Network, opts: dict, ports: list[dict], container_name: str = "",
                     container_id: str = "") -> tuple[str, dict]:
        """CNI_ARGS and the runtimeConfig values for one network. The container's name goes
        in as ``K8S_POD_NAME`` (as podman passes it): the dnsname plugin registers that name
        at ADD and removes the entries of that name at DEL."""
        caps: set[str] = set()
        for p in net.plugins:
            c = p.get("capabilities")
            if isinstance(c, dict):
                caps.update(k for k, v in c.items() if v is True)
        ips = self._requested_ips(net.name, opts)
        mac = opts.get("mac") or opts.get("static_mac") or ""
        aliases = opts.get("aliases") or []
        args = ["IgnoreUnknown=1"]
        if container_name and CONTAINER_ID_RE.match(container_name):
            args += [f"K8S_POD_NAMESPACE={container_name}", f"K8S_POD_NAME={container_name}"]
            if container_id:
                args.append(f"K8S_POD_INFRA_CONTAINER_ID={container_id}")
        rc: dict[str, Any] = {}
        if ports:
            rc["portMappings"] = ports
        if ips:
            if "ips" in caps:
                rc["ips"] = ips
            else:
                args.append("IP=" + ",".join(ips))
        if mac:
            if "mac" in caps:
                rc["mac"] = mac
            else:
                args.append(f"MAC={mac}")
        if aliases:
            rc["aliases"] = {net.name: list(aliases)}
        return ";".join(args), rc

    @hookimpl
    def network_setup(self, container_id, netns_path, networks, port_mappings, options):
        items = self._network_items(networks)
        if not items:
            return {}
        if not netns_path or not _netns.is_netns(netns_path):
            raise NetworkError(f"network namespace {netns_path!r} does not exist (or is not a network namespace)")
        if not isinstance(container_id, str) or not CONTAINER_ID_RE.match(container_id):
            raise InvalidArgument(f"invalid container ID {container_id!r} for CNI")
        ports = self._port_mappings(port_mappings)
        cname = str((options or {}).get("container_name") or "")
        # interfaces of networks this container is already on (``network connect``) stay
        existing = self.executor.container_ifnames(container_id)
        ifnames = self._ifnames(items, existing.values())
        scan = self._ensure_default(self.store.scan(), [n for n, _ in items])
        nets = [self.store.get(name, scan) for name, _ in items]
        for (name, _), ifname in zip(items, ifnames):
            if name in existing:
                raise NetworkError(f"container {container_id} is already connected to network {name}")
            if ifname in existing.values():
                raise NetworkError(f"container {container_id} already has an interface {ifname}")
            # A DEL after a failed ADD removes the interface by name: never let it be
            # somebody else's.
            if _netns.link_exists(netns_path, ifname):
                raise NetworkError(f"interface {ifname} already exists in network namespace {netns_path}")
        results: dict[str, dict] = {}
        done: list[tuple[str, str]] = []
        try:
            for net, (name, opts), ifname in zip(nets, items, ifnames):
                cni_args, rc = self._attach_args(net, opts, ports, cname, container_id)
                raw = self.executor.add(
                    net.conflist,
                    container_id=container_id,
                    netns=netns_path,
                    ifname=ifname,
                    cni_args=cni_args,
                    runtime_config=rc,
                )
                done.append((name, ifname))
                results[name] = normalize_result(raw, ifname)
        except BaseException:
            for name, ifname in reversed(done):
                cache = self.executor.read_cache(name, container_id, ifname)
                if cache is None:
                    continue
                try:
                    self._delete(cache, netns_path)
                except KpodError as exc:
                    log.warning("cleaning up network %s after a failed setup: %s", name, exc.message)
            raise
        return results

    def _delete(self, cache: dict, netns_path: str | None) -> None:
        if netns_path and _netns.is_netns(netns_path):
            try:
                present = _netns.link_exists(netns_path, cache["ifName"])
            except OSError:
                present = True
            if present:
                self.executor.delete(cache, netns_path)
                return
        # The namespace is gone, or the container's interface is. Some plugins only undo
        # host-side state (the bridge plugin's masquerade rules) from what they find on that
        # interface, so give them a stand-in: a scratch namespace holding an interface of
        # that name with the cached addresses.
        result = cache.get("result") or {}
        addrs = [ip.get("address") for ip in normalize_result(result, cache["ifName"])["ips"] if ip.get("address")]
        if not addrs:
            self.executor.delete(cache, "")
            return
        tag = re.sub(r"[^a-zA-Z0-9]", "", cache["containerId"])[:12]
        scratch = os.path.join(self.netns_dir, f"kpod-del-{os.getpid()}-{tag}")
        try:
            _netns.remove(scratch)
            _netns.create(scratch)
            self._dummy_interface(scratch, cache["ifName"], addrs)
        except Exception as exc:  # noqa: BLE001 - fall back to a plain DEL
            log.debug("no stand-in namespace for DEL: %s", exc)
            try:
                _netns.remove(scratch)
            except OSError:
                pass
            self.executor.delete(cache, "")
            return
        try:
            self.executor.delete(cache, scratch)
        finally:
            try:
                _netns.remove(scratch)
            except OSError as exc:
                log.warning("removing scratch namespace %s: %s", scratch, exc)

    @staticmethod
    def _dummy_interface(ns_path: str, ifname: str, addrs: list[str]) -> None:
        from pyroute2 import NetNS

        with NetNS(ns_path) as ns:
            # a veth pair: always available where the bridge plugin works (dummy may not be)
            ns.link("add", ifname=ifname, kind="veth", peer="kpod-standin")
            idx = ns.link_lookup(ifname=ifname)[0]
            for a in addrs:
                iface = ipaddress.ip_interface(a)
                ns.addr("add", index=idx, address=str(iface.ip), prefixlen=iface.network.prefixlen)

    @hookimpl
    def network_teardown(self, container_id, netns_path, networks, port_mappings):
        items = self._network_items(networks)
        if not items:
            return True
        ifnames = self._ifnames(items)
        ports = self._port_mappings(port_mappings)
        errors: list[str] = []
        scan = None
        for (name, opts), ifname in reversed(list(zip(items, ifnames))):
            cache = self.executor.read_cache(name, container_id)
            if cache is None:
                # Nothing recorded (lost cache, or never set up): DEL with the current
                # configuration, as libcni does; plugins tolerate a DEL of nothing.
                scan = scan or self.store.scan()
                net = scan.networks.get(name)
                if net is None:
                    log.debug("teardown: network %s of container %s: no configuration, nothing to do", name, container_id)
                    continue
                cni_args, rc = self._attach_args(net, opts, ports)
                # host-local's lease records the interface name; without any record the
                # interface name is a guess, so the DEL must not touch the namespace.
                lease_if, result = self._from_leases(net, container_id, None, netns_path)
                cache = {
                    "config": net.conflist,
                    "containerId": container_id,
                    "ifName": lease_if or ifname,
                    "cniArgs": cni_args,
                    "capabilityArgs": rc,
                    "result": result,
                }
                del_netns = netns_path if lease_if else ""
            else:
                del_netns = netns_path
                if cache.get("result") is None:  # ADD never completed
                    cache["result"] = self._from_leases(
                        Network(name, "", cache["config"]), container_id, cache["ifName"], netns_path
                    )[1]
            try:
                self._delete(cache, del_netns)
            except KpodError as exc:
                errors.append(exc.message)
        if errors:
            raise NetworkError("; ".join(errors))
        return True

    @staticmethod
    def _from_leases(
        net: Network, container_id: str, ifname: str | None, netns_path: str | None
    ) -> tuple[str | None, dict | None]:
        """Rebuild a minimal ADD result from host-local's lease files, for a DEL without a
        cache: chained plugins (firewall) only know what to remove from ``prevResult``.
        Returns ``(interface name, result)``; ``(None, None)`` when no lease is the
        container's (on *ifname*, or on any interface when *ifname* is None)."""
        ipam = net.ipam()
        if ipam.get("type") != "host-local":
            return None, None
        d = os.path.join(ipam.get("dataDir") or "/var/lib/cni/networks", net.name)
        try:
            names = os.listdir(d)
        except OSError:
            return None, None
        ips = []
        for fname in sorted(names):
            try:
                ip = ipaddress.ip_address(fname)
                with open(os.path.join(d, fname), encoding="utf-8", errors="replace") as f:
                    lines = f.read().splitlines()
            except (ValueError, OSError):
                continue
            if not lines or lines[0].strip() != container_id:
                continue
            lease_if = lines[1].strip() if len(lines) > 1 else ""
            if ifname is None:
                if not lease_if:
                    continue
                ifname = lease_if
            elif lease_if and lease_if != ifname:
                continue
            entry: dict[str, Any] = {"address": f"{ip}/{ip.max_prefixlen}", "interface": 0}
            for r in net.ranges():
                try:
                    sub = ipaddress.ip_network(r["subnet"], strict=False)
                except ValueError:
                    continue
                if ip in sub:
                    entry["address"] = f"{ip}/{sub.prefixlen}"
                    if r.get("gateway"):
                        entry["gateway"] = r["gateway"]
                    break
            if version_tuple(net.conflist.get("cniVersion")) < (1, 0, 0):
                entry["version"] = str(ip.version)
            ips.append(entry)
        if not ips:
            return None, None
        return ifname, {
            "cniVersion": net.conflist.get("cniVersion"),
            "interfaces": [{"name": ifname, "sandbox": netns_path or ""}],
            "ips": ips,
        }

    @hookimpl
    def network_check(self, container_id, netns_path, networks, port_mappings):
        items = self._network_items(networks)
        if items and (not netns_path or not _netns.is_netns(netns_path)):
            raise NetworkError(f"network namespace {netns_path!r} does not exist")
        for name, _ in items:
            cache = self.executor.read_cache(name, container_id)
            if cache is None:
                raise NetworkError(f"container {container_id} is not connected to network {name}")
            self.executor.check(cache, netns_path)
        return True

    # ==================================================================================
    # network definitions
    # ==================================================================================
    def _ensure_default(self, scan, wanted: Iterable[str] | None = None, strict: bool = True):
        """Write the default network's file if it is wanted and missing; returns a scan.

        A malformed file for it is never overwritten: an error (*strict*) or left alone.
        """
        name = self.config.default_network
        if not name or name in scan.networks or (wanted is not None and name not in wanted):
            return scan
        try:
            self.store.raise_if_malformed(name, scan)
            return self._write_default(name)
        except NetworkError as exc:
            if strict:
                raise
            log.warning("default network %s: %s", name, exc.message)
            return scan

    def _write_default(self, name: str):
        with self.store.lock():
            scan = self.store.scan()
            if name in scan.networks:
                return scan
            subnet = ipaddress.ip_network(self.default_subnet, strict=False)
            conflist = build_conflist(
                name,
                driver="bridge",
                ranges=[{"subnet": str(subnet), "gateway": str(next(subnet.hosts()))}],
                internal=False,
                interface=self.default_bridge,
                ipam_dir=self.ipam_dir,
                tuning_dir=self.tuning_dir,
                labels={},
                options={},
            )
            try:
                self.store.write_new(conflist)
            except AlreadyExists as exc:
                raise NetworkError(f"default network {name}: {exc.message}") from None
            log.info("created the default network %s in %s", name, self.config_dir)
            return self.store.scan()

    @hookimpl
    def network_list(self):
        scan = self._ensure_default(self.store.scan(), strict=False)
        for fname, (guess, reason) in sorted(scan.bad.items()):
            log.warning("skipping malformed CNI config %s: %s", os.path.join(self.config_dir, fname), reason)
        return [scan.networks[n].to_dict() for n in sorted(scan.networks)]

    @hookimpl
    def network_inspect(self, name):
        scan = self._ensure_default(self.store.scan(), [name])
        try:
            return self.store.get(name, scan).to_dict()
        except NotFound:
            return None

    @hookimpl
    def network_info(self):
        found = {}
        for d in self.plugin_dirs:
            try:
                for p in sorted(os.listdir(d)):
                    if p not in found and os.access(os.path.join(d, p), os.X_OK):
                        found[p] = os.path.join(d, p)
            except OSError:
                continue
        return {
            "backend": self.name,
            "config_dir": self.config_dir,
            "plugin_dirs": list(self.plugin_dirs),
            "plugins": sorted(found),
            "default_network": self.config.default_network,
            "default_subnet": self.default_subnet,
            "netns_dir": self.netns_dir,
            "cache_dir": self.cache_dir,
            "ipam_dir": self.ipam_dir,
            "cni_version": "1.0.0",
            "package": "containernetworking-plugins",
        }

    # -- create ------------------------------------------------------------------------
    @hookimpl
    def network_create(self, name, options):
        validate_name(name)
        options = dict(options or {})
        drv_opts = options.get("options") or {}
        if not isinstance(drv_opts, dict):
            raise InvalidArgument("network options must be a mapping")
        driver = options.get("driver") or "bridge"
        if driver not in SUPPORTED_DRIVERS:
            raise InvalidArgument(f"unsupported network driver {driver!r} (supported: {', '.join(SUPPORTED_DRIVERS)})")
        internal = _as_bool(options.get("internal"), "internal")
        # DNS (the dnsname plugin) is for bridges: a macvlan network has no host-side
        # address for dnsmasq to listen on (podman's CNI backend does the same).
        dns = _as_bool(options.get("dns_enabled"), "dns_enabled") and driver == "bridge"
        if dns:
            self._check_dns_plugin()
        labels = options.get("labels") or {}
        if not isinstance(labels, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in labels.items()):
            raise InvalidArgument("network labels must map strings to strings")
        mtu = options.get("mtu", drv_opts.get("mtu"))
        if mtu not in (None, ""):
            try:
                mtu = int(mtu)
                if not 68 <= mtu <= 65535:
                    raise ValueError
            except (TypeError, ValueError):
                raise InvalidArgument(f"invalid mtu {options.get('mtu', drv_opts.get('mtu'))!r}") from None
        else:
            mtu = None
        saved_opts = {k: str(v) for k, v in drv_opts.items()}
        if mtu:
            saved_opts["mtu"] = str(mtu)

        # the default network counts when checking subnets and bridge names
        self._ensure_default(self.store.scan(), strict=False)
        with self.store.lock():
            scan = self.store.scan()
            if name in scan.networks:
                raise AlreadyExists(f"network {name} already exists")
            try:
                self.store.raise_if_malformed(name, scan)
            except NetworkError as exc:
                raise AlreadyExists(f"network {name} already exists ({exc.message})") from None
            ranges = self._ranges(options, scan)
            mode = None
            if driver == "bridge":
                interface = self._bridge_name(options, scan)
            else:
                interface = self._macvlan_parent(options, drv_opts)
                mode = options.get("mode") or drv_opts.get("mode") or "bridge"
                if mode not in MACVLAN_MODES:
                    raise InvalidArgument(f"invalid macvlan mode {mode!r} (one of {', '.join(MACVLAN_MODES)})")
                saved_opts["mode"] = mode
            conflist = build_conflist(
                name,
                driver=driver,
                ranges=ranges,
                internal=internal,
                interface=interface,
                ipam_dir=self.ipam_dir,
                tuning_dir=self.tuning_dir,
                labels=dict(labels),
                options=saved_opts,
                mtu=mtu,
                mode=mode,
                dns=dns,
            )
            path = self.store.write_new(conflist)
        return Network(name, path, conflist).to_dict()

    def _ranges(self, options: dict, scan) -> list[dict]:
        subnets = options.get("subnet") or options.get("subnets") or []
        gateways = options.get("gateway") or []
        if isinstance(subnets, (str, dict)):
            subnets = [subnets]
        if isinstance(gateways, str):
            gateways = [gateways]
        ip_range = options.get("ip_range") or options.get("range")
        existing = [(n, s) for n in scan.networks.values() for s in n.subnets()]
        host = [a for a in host_addresses() if not a.ip.is_loopback and not a.ip.is_link_local]

        def conflict(net) -> str | None:
            for other, s in existing:
                if s.version == net.version and s.overlaps(net):
                    return f"subnet {net} overlaps with subnet {s} of network {other.name}"
            for a in host:
                if a.version == net.version and a.network.overlaps(net):
                    return f"subnet {net} is already used on the host (address {a})"
            return None

        def free_ipv4() -> dict:
            pool = ipaddress.ip_network(self.subnet_pool, strict=False)
            for cand in pool.subnets(new_prefix=max(24, pool.prefixlen)):
                if conflict(cand) is None:
                    return {"subnet": str(cand), "gateway": str(next(cand.hosts()))}
            raise NetworkError(f"no free subnet left in {pool} for a new network")

        def free_ipv6() -> dict:
            # a unique local /64 (RFC 4193: fd00::/8, a random 40-bit global ID), as podman
            for _ in range(100):
                cand = ipaddress.ip_network((0xFD << 120 | int.from_bytes(os.urandom(5), "big") << 80, 64))
                if conflict(cand) is None:
                    return {"subnet": str(cand), "gateway": str(cand.network_address + 1)}
            raise NetworkError("no free IPv6 subnet found for a new network")

        ipv6 = _as_bool(options.get("ipv6"), "ipv6")
        ranges: list[dict] = []
        if not subnets:
            if gateways or ip_range:
                raise InvalidArgument("a gateway or IP range needs a subnet")
            # --ipv6 without subnets: dual stack (podman's)
            return [free_ipv4(), free_ipv6()] if ipv6 else [free_ipv4()]
        seen: list = []
        for i, raw in enumerate(subnets):
            gw = None
            if isinstance(raw, dict):
                gw = raw.get("gateway")
                raw = raw.get("subnet")
            try:
                net = ipaddress.ip_network(str(raw), strict=False)
            except ValueError:
                raise InvalidArgument(f"invalid subnet {raw!r}: must be a CIDR like 10.89.0.0/24") from None
            if "/" not in str(raw):
                raise InvalidArgument(f"invalid subnet {raw!r}: must be a CIDR like 10.89.0.0/24")
            if net.num_addresses < 4:
                raise InvalidArgument(f"subnet {net} is too small")
            for s in seen:
                if s.overlaps(net):
                    raise InvalidArgument(f"subnets {s} and {net} overlap")
            seen.append(net)
            msg = conflict(net)
            if msg:
                raise InvalidArgument(msg)
            if gw is None and i < len(gateways):
                gw = gateways[i]
            if gw:
                try:
                    gwa = ipaddress.ip_address(str(gw))
                except ValueError:
                    raise InvalidArgument(f"invalid gateway {gw!r}") from None
                if gwa not in net or gwa == net.network_address or (net.version == 4 and gwa == net.broadcast_address):
                    raise InvalidArgument(f"gateway {gw} is not a usable address of subnet {net}")
            else:
                gwa = next(net.hosts())
            entry = {"subnet": str(net), "gateway": str(gwa)}
            if ip_range and i == 0:
                try:
                    rng = ipaddress.ip_network(str(ip_range), strict=False)
                except ValueError:
                    raise InvalidArgument(f"invalid IP range {ip_range!r}: must be a CIDR") from None
                if rng.version != net.version or not rng.subnet_of(net):
                    raise InvalidArgument(f"IP range {rng} is not inside subnet {net}")
                start, end = rng.network_address, rng.broadcast_address
                if start == net.network_address:
                    start += 1
                if net.version == 4 and end == net.broadcast_address:
                    end -= 1
                entry["rangeStart"], entry["rangeEnd"] = str(start), str(end)
            ranges.append(entry)
        if len(gateways) > len(subnets):
            raise InvalidArgument("more gateways than subnets")
        if ipv6:  # dual stack: the family not given gets a free subnet (podman's --ipv6)
            families = {ipaddress.ip_network(r["subnet"]).version for r in ranges}
            if 4 not in families:
                ranges.append(free_ipv4())
            if 6 not in families:
                ranges.append(free_ipv6())
        return ranges

    def _bridge_name(self, options: dict, scan) -> str:
        used = {n.interface: n.name for n in scan.networks.values() if n.driver == "bridge"}
        name = (
            options.get("interface")
            or options.get("interface_name")
            or options.get("network_interface")
            or options.get("bridge")
        )
        host = host_interfaces()
        if name:
            if not IFNAME_RE.match(name):
                raise InvalidArgument(f"invalid bridge name {name!r} (at most 15 letters, digits, '_', '.', '-')")
            if name in used:
                raise InvalidArgument(f"bridge {name} is already used by network {used[name]}")
            if name in host and not is_bridge(name):
                raise InvalidArgument(f"interface {name} already exists on the host and is not a bridge")
            return name
        for n in range(1, 100000):
            cand = f"{self.bridge_prefix}{n}"
            if cand not in used and cand not in host:
                return cand
        raise NetworkError("no free bridge name")  # pragma: no cover

    @staticmethod
    def _macvlan_parent(options: dict, drv_opts: dict) -> str:
        parent = (
            options.get("macvlan")
            or options.get("parent")
            or drv_opts.get("parent")
            or options.get("interface")
            or options.get("network_interface")
        )
        if not parent:
            parent = default_route_interface()
            if not parent:
                raise InvalidArgument("macvlan network: no parent interface given and no default route to pick one from")
        if parent not in host_interfaces():
            raise InvalidArgument(f"macvlan parent interface {parent} does not exist")
        return parent

    def _check_dns_plugin(self) -> None:
        """A network with DNS needs the dnsname plugin and dnsmasq: refuse to write one that
        every container start would fail on."""
        import shutil

        try:
            self.executor.find_plugin(DNS_PLUGIN)
        except NetworkError:
            raise NetworkError(
                f"DNS needs the {DNS_PLUGIN} CNI plugin, not found in {', '.join(self.plugin_dirs)} (Debian package "
                "golang-github-containernetworking-plugin-dnsname); install it or use --disable-dns") from None
        path = os.environ.get("PATH") or "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        if not shutil.which("dnsmasq", path=path + os.pathsep + "/usr/sbin:/sbin"):
            raise NetworkError("DNS needs dnsmasq (Debian package dnsmasq-base); install it or use --disable-dns")

    # -- remove ------------------------------------------------------------------------
    @hookimpl
    def network_remove(self, name):
        if name == self.config.default_network:
            raise InvalidArgument(f"default network {name} cannot be removed")
        with self.store.lock():
            scan = self.store.scan()
            net = self.store.get(name, scan)
            try:
                os.unlink(net.file)
            except FileNotFoundError:
                pass
            except OSError as exc:
                raise NetworkError(f"removing network {name}: {net.file}: {exc.strerror}") from None
            others = [n for n in scan.networks.values() if n.name != name]
        if net.driver == "bridge":
            br = net.interface
            if br and is_bridge(br) and not bridge_ports(br) and not any(o.driver == "bridge" and o.interface == br for o in others):
                try:
                    self._delete_link(br)
                except Exception as exc:  # noqa: BLE001 - the network is gone already
                    log.warning("network %s removed but its bridge %s was not: %s", name, br, exc)
        self._remove_ipam_dir(net)
        if net.dns_enabled or os.path.isdir(self.dns_dir(name)):
            self._remove_dns(name, net.interface if net.driver == "bridge" else "")
        return True

    def _remove_dns(self, name: str, bridge: str) -> None:
        """Stop network *name*'s dnsmasq, remove the dnsname plugin's files and the INPUT
        rule it inserted for the bridge (``-i BRIDGE -p udp --dport 53 -j ACCEPT``, which
        the plugin itself never removes)."""
        import shutil

        d = self.dns_dir(name)
        stop_dnsmasq(d)
        shutil.rmtree(d, ignore_errors=True)
        for parent in (os.path.dirname(d), os.path.dirname(os.path.dirname(d)),
                       os.path.dirname(os.path.dirname(os.path.dirname(d))), self.dns_runtime_dir):
            try:
                os.rmdir(parent)  # only when empty
            except OSError:
                break
        if bridge:
            delete_dns_rule(bridge)

    @staticmethod
    def _delete_link(ifname: str) -> None:
        from pyroute2 import IPRoute

        with IPRoute() as ipr:
            idx = ipr.link_lookup(ifname=ifname)
            if idx:
                ipr.link("del", index=idx[0])

    @staticmethod
    def _remove_ipam_dir(net: Network) -> None:
        ipam = net.ipam()
        if ipam.get("type") != "host-local":
            return
        data_dir = ipam.get("dataDir") or "/var/lib/cni/networks"
        d = os.path.join(data_dir, net.name)
        try:
            entries = os.listdir(d)
        except OSError:
            return
        if all(e == "lock" or e.startswith("last_reserved_ip") for e in entries):
            import shutil

            shutil.rmtree(d, ignore_errors=True)


def _dnsmasq_pid(d: str) -> int | None:
    """The PID in *d*'s pidfile when that process is a dnsmasq using *d*'s configuration."""
    try:
        with open(os.path.join(d, "pidfile")) as f:
            pid = int(f.read().strip())
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = f.read().split(b"\0")
    except (OSError, ValueError):
        return None
    conf = os.path.join(d, "dnsmasq.conf").encode()
    if argv and os.path.basename(argv[0]) == b"dnsmasq" and any(conf in a for a in argv):
        return pid
    return None


def stop_dnsmasq(d: str, timeout: float = 5.0) -> None:
    """Stop the dnsmasq the dnsname plugin started for the network whose files are in *d*."""
    import signal
    import time

    pid = _dnsmasq_pid(d)
    if pid is None:
        return
    sig = signal.SIGTERM
    deadline = time.monotonic() + timeout
    while _dnsmasq_pid(d) == pid:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        if time.monotonic() > deadline:
            sig = signal.SIGKILL
        time.sleep(0.02)


def delete_dns_rule(bridge: str) -> None:
    """Delete every copy of the INPUT rule dnsname inserts for *bridge*."""
    import subprocess

    rule = ["INPUT", "-i", bridge, "-p", "udp", "-m", "udp", "--dport", "53", "-j", "ACCEPT"]
    for _ in range(16):
        try:
            p = subprocess.run(["iptables", "-w", "-t", "filter", "-D", *rule], capture_output=True)
        except OSError as exc:
            log.warning("cannot remove the DNS rule of bridge %s: %s", bridge, exc)
            return
        if p.returncode != 0:
            return


def _as_bool(value, what: str) -> bool:
    if value in (None, ""):
        return False
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on", "0", "false", "no", "off"):
        return value.lower() in ("1", "true", "yes", "on")
    raise InvalidArgument(f"option {what} must be true or false, got {value!r}")


# re-exported for tests and tools
__all__ += ["network_id", "version_tuple"]
