"""Running CNI plugin chains (the part of libcni a runtime needs), per the CNI spec.

* ADD runs every plugin of a network configuration list in order; each one gets the list's
  ``name`` and ``cniVersion``, the previous plugin's result as ``prevResult`` and a
  ``runtimeConfig`` holding only the capabilities it declares.
* DEL runs them in reverse order with the cached ADD result as ``prevResult`` (0.4.0+).
* CHECK runs them in order with the cached result (0.4.0+ only, unless ``disableCheck``).

The result of an ADD is cached in ``<cache_dir>/<network>-<container>-<ifname>`` together
with the configuration and arguments it was made with, so DEL uses the same ones even when
the network's file changed or was removed in the meantime.
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import subprocess

from libpod_core.errors import NetworkError
from libpod_core.log import getLogger

log = getLogger(__name__)

CACHE_KIND = "kpodCniCacheV1"
DEFAULT_TIMEOUT = 60.0

# CNI error codes (spec, "Error" section) -> short names for messages.
_ERROR_CODES = {
    1: "incompatible CNI version",
    2: "unsupported field in network configuration",
    3: "container unknown or does not exist",
    4: "invalid necessary environment variables",
    5: "I/O failure",
    6: "failed to decode content",
    7: "invalid network config",
    11: "try again later",
}


def _kill_group(proc: subprocess.Popen) -> None:
    import signal
    import subprocess

    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    try:
        proc.communicate(timeout=10)
    except subprocess.TimeoutExpired:  # pragma: no cover - something escaped the group
        proc.kill()
        proc.wait()


def version_tuple(v: str | None) -> tuple[int, ...]:
    out = []
    for part in str(v or "0.0.0").split("."):
        digits = "".join(ch for ch in part if ch.isdigit())
        out.append(int(digits) if digits else 0)
    while len(out) < 3:
        out.append(0)
    return tuple(out[:3])


class PluginFailure(NetworkError):
    """One CNI plugin failed; keeps the plugin's own error fields."""

    def __init__(self, message: str, *, plugin: str = "", code: int | None = None, msg: str = "", details: str = ""):
        super().__init__(message)
        self.plugin = plugin
        self.code = code
        self.msg = msg
        self.details = details


class CNIExecutor:
    """Finds and runs CNI plugin executables."""

    def __init__(self, plugin_dirs: list[str], cache_dir: str, timeout: float = DEFAULT_TIMEOUT,
                 plugin_env: dict[str, dict[str, str]] | None = None):
        self.plugin_dirs = list(plugin_dirs)
        self.cache_dir = cache_dir
        self.timeout = timeout
        #: extra environment per plugin type (``{"dnsname": {"XDG_RUNTIME_DIR": ...}}``)
        self.plugin_env = dict(plugin_env or {})

    # -- plugins ------------------------------------------------------------------------
    def find_plugin(self, ptype: str) -> str:
        if not ptype or "/" in ptype or ptype in (".", ".."):
            raise NetworkError(f"invalid CNI plugin type {ptype!r}")
        for d in self.plugin_dirs:
            p = os.path.join(d, ptype)
            if os.path.isfile(p) and os.access(p, os.X_OK):
                return p
        raise NetworkError(
            f"CNI plugin {ptype!r} not found in {', '.join(self.plugin_dirs) or '(no plugin dirs)'}"
            " (setting cni_plugin_dirs; Debian package containernetworking-plugins)"
        )

    def plugin_versions(self, ptype: str) -> list[str]:
        """The spec versions a plugin supports (the VERSION command)."""
        path = self.find_plugin(ptype)
        out = self._run(path, ptype, "VERSION", {"CNI_COMMAND": "VERSION"}, b'{"cniVersion":"1.0.0"}', "")
        try:
            return list(json.loads(out).get("supportedVersions") or [])
        except (ValueError, AttributeError):
            return []

    def _run(self, path: str, ptype: str, command: str, cni_env: dict[str, str], stdin: bytes, network: str) -> bytes:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CNI_")}
        env.setdefault("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
        env.update(self.plugin_env.get(ptype) or {})
        env.update(cni_env)
        where = f"network {network}: " if network else ""
        import subprocess  # here: a command that runs no plugin (create, ps) does not import it

        try:
            # Own process group: on a timeout the plugin and whatever it started (iptables...)
            # are killed together, and nothing keeps our pipes open afterwards.
            proc = subprocess.Popen(
                [path],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=env,
                close_fds=True,
                start_new_session=True,
            )
        except OSError as exc:
            raise PluginFailure(f"{where}CNI plugin {ptype} {command}: cannot run {path}: {exc.strerror}", plugin=ptype) from None
        try:
            out, err = proc.communicate(stdin, timeout=self.timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            raise PluginFailure(
                f"{where}CNI plugin {ptype} {command} timed out after {self.timeout:g}s", plugin=ptype
            ) from None
        except BaseException:
            _kill_group(proc)
            raise
        if proc.returncode != 0:
            raise self._failure(ptype, command, subprocess.CompletedProcess([path], proc.returncode, out, err), where)
        return out

    @staticmethod
    def _failure(ptype: str, command: str, proc: subprocess.CompletedProcess, where: str) -> PluginFailure:
        code, msg, details = None, "", ""
        try:
            doc = json.loads(proc.stdout or b"null")
        except ValueError:
            doc = None
        if isinstance(doc, dict) and ("msg" in doc or "code" in doc):
            code = doc.get("code")
            msg = str(doc.get("msg") or "").strip()
            details = str(doc.get("details") or "").strip()
        if not msg:
            text = (proc.stderr or proc.stdout or b"").decode(errors="replace").strip()
            msg = text.splitlines()[-1] if text else _ERROR_CODES.get(code, f"exit status {proc.returncode}")
        text = f"{where}CNI plugin {ptype} {command} failed: {msg}"
        if details and details not in msg:
            text += f" ({details})"
        return PluginFailure(text, plugin=ptype, code=code, msg=msg, details=details)

    # -- one plugin ---------------------------------------------------------------------
    @staticmethod
    def plugin_stdin(
        conflist: dict, plugin: dict, prev_result: dict | None, runtime_config: dict[str, Any]
    ) -> bytes:
        conf = dict(plugin)
        conf["name"] = conflist["name"]
        conf["cniVersion"] = conflist["cniVersion"]
        conf.pop("prevResult", None)
        conf.pop("runtimeConfig", None)
        if prev_result is not None:
            conf["prevResult"] = prev_result
        caps = plugin.get("capabilities")
        if isinstance(caps, dict):
            rc = {k: v for k, v in runtime_config.items() if caps.get(k) is True and v is not None}
            if rc:
                conf["runtimeConfig"] = rc
        return json.dumps(conf).encode()

    def exec_plugin(
        self,
        command: str,
        conflist: dict,
        plugin: dict,
        *,
        container_id: str,
        netns: str,
        ifname: str,
        cni_args: str,
        runtime_config: dict[str, Any],
        prev_result: dict | None,
    ) -> dict | None:
        ptype = plugin.get("type", "")
        if passes_through(command, plugin, runtime_config, cni_args, prev_result):
            log.debug("CNI %s %s network=%s: nothing to do, not run", ptype, command, conflist["name"])
            return prev_result if command == "ADD" else None
        path = self.find_plugin(ptype)
        env = {
            "CNI_COMMAND": command,
            "CNI_CONTAINERID": container_id,
            "CNI_NETNS": netns,
            "CNI_IFNAME": ifname,
            "CNI_ARGS": cni_args,
            "CNI_PATH": os.pathsep.join(self.plugin_dirs),
        }
        stdin = self.plugin_stdin(conflist, plugin, prev_result, runtime_config)
        log.debug("CNI %s %s network=%s container=%s if=%s", ptype, command, conflist["name"], container_id, ifname)
        out = self._run(path, ptype, command, env, stdin, conflist["name"])
        if command != "ADD":
            return None
        try:
            result = json.loads(out)
        except ValueError:
            raise PluginFailure(
                f"network {conflist['name']}: CNI plugin {ptype} ADD returned an invalid result: {out[:200]!r}",
                plugin=ptype,
            ) from None
        if not isinstance(result, dict):
            raise PluginFailure(f"network {conflist['name']}: CNI plugin {ptype} ADD returned no result", plugin=ptype)
        return result

    # -- chains -------------------------------------------------------------------------
    def add(
        self,
        conflist: dict,
        *,
        container_id: str,
        netns: str,
        ifname: str,
        cni_args: str,
        runtime_config: dict[str, Any],
    ) -> dict:
        """ADD the whole list; on a failure DEL what ran (reverse order) and re-raise."""
        key = dict(container_id=container_id, netns=netns, ifname=ifname, cni_args=cni_args, runtime_config=runtime_config)
        # A pending record first: if we die half-way, teardown still knows what to undo.
        self.write_cache(conflist, result=None, **key)
        prev: dict | None = None
        ran = 0
        try:
            for plugin in conflist["plugins"]:
                ran += 1
                prev = self.exec_plugin("ADD", conflist, plugin, prev_result=prev, **key)
        except BaseException as exc:
            try:
                self._del_plugins(conflist, conflist["plugins"][:ran], prev, **key)
            except NetworkError as cleanup_exc:
                log.warning("cleaning up after a failed CNI ADD: %s", cleanup_exc.message)
            else:
                self.remove_cache(conflist["name"], container_id, ifname)
            raise exc
        assert prev is not None
        self.write_cache(conflist, result=prev, **key)
        return prev

    def _del_plugins(
        self,
        conflist: dict,
        plugins: list[dict],
        cached: dict | None,
        *,
        container_id: str,
        netns: str,
        ifname: str,
        cni_args: str,
        runtime_config: dict[str, Any],
    ) -> None:
        with_prev = version_tuple(conflist["cniVersion"]) >= (0, 4, 0)
        errors: list[NetworkError] = []
        for plugin in reversed(plugins):
            try:
                self.exec_plugin(
                    "DEL",
                    conflist,
                    plugin,
                    container_id=container_id,
                    netns=netns,
                    ifname=ifname,
                    cni_args=cni_args,
                    runtime_config=runtime_config,
                    prev_result=cached if with_prev else None,
                )
            except NetworkError as exc:
                errors.append(exc)
        if errors:
            raise errors[0] if len(errors) == 1 else NetworkError("; ".join(e.message for e in errors))

    def delete(self, cache: dict, netns: str) -> None:
        """DEL with what a cache record (or a reconstructed one) holds; removes the cache."""
        conflist = cache["config"]
        self._del_plugins(
            conflist,
            conflist["plugins"],
            cache.get("result"),
            container_id=cache["containerId"],
            netns=netns,
            ifname=cache["ifName"],
            cni_args=cache.get("cniArgs", ""),
            runtime_config=cache.get("capabilityArgs") or {},
        )
        self.remove_cache(conflist["name"], cache["containerId"], cache["ifName"])

    def check(self, cache: dict, netns: str) -> None:
        conflist = cache["config"]
        if version_tuple(conflist["cniVersion"]) < (0, 4, 0) or conflist.get("disableCheck") is True:
            return
        if cache.get("result") is None:
            raise NetworkError(f"network {conflist['name']}: setup of container {cache['containerId']} did not complete")
        for plugin in conflist["plugins"]:
            try:
                self.exec_plugin(
                    "CHECK",
                    conflist,
                    plugin,
                    container_id=cache["containerId"],
                    netns=netns,
                    ifname=cache["ifName"],
                    cni_args=cache.get("cniArgs", ""),
                    runtime_config=cache.get("capabilityArgs") or {},
                    prev_result=cache["result"],
                )
            except PluginFailure as exc:
                if not _known_check_bug(exc, cache["result"]):
                    raise
                log.debug("ignoring a known false CHECK failure: %s", exc.message)

    # -- cache --------------------------------------------------------------------------
    def cache_path(self, network: str, container_id: str, ifname: str) -> str:
        return os.path.join(self.cache_dir, f"{network}-{container_id}-{ifname}")

    def write_cache(
        self,
        conflist: dict,
        *,
        result: dict | None,
        container_id: str,
        netns: str,
        ifname: str,
        cni_args: str,
        runtime_config: dict[str, Any],
    ) -> None:
        doc = {
            "kind": CACHE_KIND,
            "containerId": container_id,
            "networkName": conflist["name"],
            "ifName": ifname,
            "netns": netns,
            "cniArgs": cni_args,
            "capabilityArgs": runtime_config,
            "config": conflist,
            "result": result,
        }
        os.makedirs(self.cache_dir, mode=0o700, exist_ok=True)
        from libpod_core.fileutil import write_atomic

        # its temporary name starts with a dot: readers take it for no record
        write_atomic(self.cache_path(conflist["name"], container_id, ifname), json.dumps(doc), 0o600)

    def read_cache(self, network: str, container_id: str, ifname: str | None = None) -> dict | None:
        """The cache record for (network, container[, ifname]), or None."""
        if ifname is not None:
            candidates = [self.cache_path(network, container_id, ifname)]
        else:
            prefix = f"{network}-{container_id}-"
            try:
                names = sorted(n for n in os.listdir(self.cache_dir) if n.startswith(prefix))
            except FileNotFoundError:
                names = []
            candidates = [os.path.join(self.cache_dir, n) for n in names]
        for path in candidates:
            try:
                with open(path, encoding="utf-8") as f:
                    doc = json.load(f)
            except FileNotFoundError:
                continue
            except (OSError, ValueError) as exc:
                log.warning("ignoring unreadable CNI cache file %s: %s", path, exc)
                continue
            if (
                isinstance(doc, dict)
                and doc.get("kind") == CACHE_KIND
                and doc.get("networkName") == network
                and doc.get("containerId") == container_id
                and isinstance(doc.get("config"), dict)
            ):
                return doc
        return None

    def container_ifnames(self, container_id: str) -> dict[str, str]:
        """``{network: ifname}`` of every cache record (complete or pending) of a container."""
        out: dict[str, str] = {}
        marker = f"-{container_id}-"
        try:
            names = os.listdir(self.cache_dir)
        except FileNotFoundError:
            return out
        for n in names:
            if marker not in n or n.startswith("."):
                continue
            network, _, ifname = n.rpartition(marker)
            doc = self.read_cache(network, container_id, ifname)
            if doc is not None:
                out[network] = doc["ifName"]
        return out

    def remove_cache(self, network: str, container_id: str, ifname: str) -> None:
        try:
            os.unlink(self.cache_path(network, container_id, ifname))
        except FileNotFoundError:
            pass


#: plugin keys that configure nothing (the tuning plugin's own backup dir included)
_INERT_KEYS = frozenset({"type", "name", "cniVersion", "capabilities", "dataDir"})


def passes_through(command: str, plugin: dict, runtime_config: dict[str, Any], cni_args: str,
                   prev_result: dict | None) -> bool:
    """True when a chained reference plugin (containernetworking/plugins) is known to change
    nothing for this call, so that running it would only cost a process:

    * ``portmap`` without ``portMappings`` in its runtimeConfig: ADD hands prevResult back,
      CHECK returns at once, and DEL has nothing to remove (the ADD of that same cached
      configuration set up no rule);
    * ``tuning`` with no setting at all (no sysctl, mac, mtu, promisc, allmulti, args; no
      ``mac`` capability in use and no ``MAC=`` CNI_ARGS), for ADD and DEL: ADD writes no
      backup and hands prevResult back, DEL finds no backup to restore. (Its CHECK still
      runs: it also checks that the interface is not promiscuous.)

    Only with a prevResult: a first plugin in a list is always run (it would fail)."""
    if command not in ("ADD", "DEL", "CHECK"):
        return False
    if prev_result is None:
        return False
    ptype = plugin.get("type")
    caps = plugin.get("capabilities") if isinstance(plugin.get("capabilities"), dict) else {}
    if ptype == "portmap":
        return not (caps.get("portMappings") is True and runtime_config.get("portMappings"))
    if ptype == "tuning":
        if command == "CHECK" or set(plugin) - _INERT_KEYS:
            return False
        if caps.get("mac") is True and runtime_config.get("mac"):
            return False
        return not any(a.strip().upper().startswith("MAC=") for a in (cni_args or "").split(";"))
    return False


def _known_check_bug(exc: PluginFailure, result: dict | None) -> bool:
    """portmap before 1.2.0 (Debian bookworm ships 1.1.1) fails CHECK on an IPv4-only
    container because it also looks for IPv6 rules it never made (containernetworking/plugins
    issue 819). dnsname 1.3.1 looks for its files in the parent of the network's directory,
    so its CHECK always fails after it found the network's dnsmasq running. Only those exact
    cases are forgiven."""
    if exc.plugin == "dnsname" and exc.msg in ("addnhost file missing from configuration",
                                               "dnsmasq.conf file missing from configuration"):
        return True
    if exc.plugin != "portmap" or not exc.msg.startswith("could not check ipv6 dnat"):
        return False
    for ip in normalize_result(result, "")["ips"]:
        if ":" in str(ip.get("address", "")):
            return False
    return True


# -- results ---------------------------------------------------------------------------
def normalize_result(result: dict | None, ifname: str) -> dict:
    """Turn a result of any spec version into the 1.0.0 shape, plus ``mac`` and
    ``interface`` (the container-side interface name) for convenience."""
    result = result or {}
    out: dict[str, Any] = {
        "cniVersion": result.get("cniVersion", ""),
        "interfaces": [],
        "ips": [],
        "routes": [],
        "dns": {},
    }
    for iface in result.get("interfaces") or []:
        if isinstance(iface, dict):
            out["interfaces"].append({k: iface[k] for k in ("name", "mac", "mtu", "sandbox", "socketPath") if iface.get(k) not in (None, "")})
    if "ip4" in result or "ip6" in result:  # 0.1.0 / 0.2.0
        for key in ("ip4", "ip6"):
            block = result.get(key)
            if not isinstance(block, dict):
                continue
            ip = {"address": block.get("ip")}
            if block.get("gateway"):
                ip["gateway"] = block["gateway"]
            out["ips"].append(ip)
            for r in block.get("routes") or []:
                out["routes"].append({k: r[k] for k in ("dst", "gw") if r.get(k)})
    else:
        for ip in result.get("ips") or []:
            if isinstance(ip, dict):
                out["ips"].append({k: ip[k] for k in ("address", "gateway", "interface") if ip.get(k) is not None})
        for r in result.get("routes") or []:
            if isinstance(r, dict):
                out["routes"].append({k: r[k] for k in ("dst", "gw", "mtu", "advmss", "priority", "table", "scope") if r.get(k) is not None})
    dns = result.get("dns")
    if isinstance(dns, dict):
        out["dns"] = {k: v for k, v in dns.items() if v}
    mac = None
    for iface in out["interfaces"]:
        if iface.get("name") == ifname and iface.get("sandbox"):
            mac = iface.get("mac")
            break
    if mac is None:
        for ip in out["ips"]:
            idx = ip.get("interface")
            if isinstance(idx, int) and 0 <= idx < len(out["interfaces"]):
                mac = out["interfaces"][idx].get("mac")
                break
    out["mac"] = mac
    out["interface"] = ifname
    return out
