"""Network commands: the ``network`` group (create, ls, inspect, rm, prune, exists, connect,
disconnect), ``port``, and the networking flags ``create``/``run`` share
(:func:`network_flags`).

The backend (``kpod.network`` driver, CNI by default) owns the network definitions; this
module checks which containers use a network and prints podman's output.
"""

from __future__ import annotations

from typing import Any, Iterable

import click

from ..errors import InvalidArgument, KpodError, NotFound
from ..filters import group_filters as _filters
from .bodies import network_options_from_flags  # noqa: F401 - the flags below, parsed without click
from .formatting import Template, align_tabs, render_many, to_json

_CTX = {"help_option_names": ["-h", "--help"]}


# ---------------------------------------------------------------------------------------
# create/run flags
# ---------------------------------------------------------------------------------------

def network_flags() -> list:
    """Networking and pod flags of ``create`` and ``run`` (podman's names)."""
    return [
        click.option("--network", "--net", "network", metavar="MODE",
                     help="bridge (default), NAME[,NAME...], none, host, container:ID or ns:PATH"),
        click.option("-p", "--publish", multiple=True, metavar="[IP:][HOSTPORT:]PORT[/PROTO]",
                     help="Publish a container port on the host (ranges A-B allowed)"),
        click.option("-P", "--publish-all", is_flag=True,
                     help="Publish the image's exposed ports on free host ports"),
        click.option("--ip", metavar="ADDRESS", help="Static IPv4 address on the container's network"),
        click.option("--mac-address", metavar="MAC", help="Static MAC address of the container's interface"),
        click.option("--network-alias", "network_aliases", multiple=True, metavar="NAME",
                     help="Another name the container has on its networks' DNS"),
        click.option("--dns", multiple=True, metavar="IP", help="DNS server for /etc/resolv.conf"),
        click.option("--dns-search", multiple=True, metavar="DOMAIN", help="DNS search domain ('.' for none)"),
        click.option("--dns-option", multiple=True, metavar="OPTION", help="resolv.conf option (e.g. ndots:2)"),
        click.option("--add-host", multiple=True, metavar="HOST:IP", help="Add a line to /etc/hosts"),
        click.option("--no-hosts", is_flag=True, help="Do not create /etc/hosts for the container"),
        click.option("--pod", "pods", multiple=True, metavar="NAME",
                     help="Join this pod (new:NAME creates it)"),
    ]


# ---------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------

def _echo_err(msg: str) -> None:
    from .main import one_line

    click.echo(f"Error: {one_line(msg)}", err=True)


def _backend(state):
    rt = state.runtime
    rt.plugins.driver("network")
    return rt.hook


def inspect_network(state, name: str) -> dict | None:
    """``network inspect``'s record of network *name* (with the containers on it), or None."""
    net = _backend(state).network_inspect(name=name)
    if not net:
        return None
    net = dict(net)
    net["containers"] = {c.id: {"name": c.name} for c in containers_using(state, net["name"])}
    return net


def _network(state, name: str) -> dict:
    net = _backend(state).network_inspect(name=name)
    if not net:
        raise NotFound(f"unable to find network with name or ID {name}: network not found")
    return net


def containers_using(state, name: str) -> list:
    """Containers attached (in their configuration) to network *name*."""
    return state.runtime.container_network_provider.users(name)


def _record(net: dict, no_trunc: bool = False) -> dict:
    """A network for templates: the backend's keys plus podman's Go field names."""
    rec = dict(net)
    rec.update(
        ID=net.get("id", "") if no_trunc else net.get("id", "")[:12],
        Name=net.get("name", ""),
        Driver=net.get("driver", ""),
        NetworkInterface=net.get("network_interface", ""),
        Created=net.get("created", ""),
        Subnets=net.get("subnets", []),
        IPv6Enabled=net.get("ipv6_enabled", False),
        Internal=net.get("internal", False),
        DNSEnabled=net.get("dns_enabled", False),
        Labels=net.get("labels", {}),
        Options=net.get("options", {}),
        IPAMOptions=net.get("ipam_options", {}),
    )
    return rec


def _kv(items: Iterable[str], what: str) -> dict[str, str]:
    out = {}
    for item in items:
        k, sep, v = item.partition("=")
        if not k:
            raise InvalidArgument(f"invalid {what} {item!r}: expected KEY=VALUE")
        out[k] = v
    return out


# ---------------------------------------------------------------------------------------
# the network group
# ---------------------------------------------------------------------------------------

class NetworkGroup(click.Group):
    ALIASES = {"list": "ls", "remove": "rm"}

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        return super().get_command(ctx, self.ALIASES.get(name, name))


@click.group(cls=NetworkGroup, context_settings=_CTX)
def network() -> None:
    """Manage networks (CNI configuration lists of the network backend)."""


@network.command("create", context_settings=_CTX)
@click.option("-d", "--driver", default="bridge", metavar="DRIVER", help="bridge (default) or macvlan")
@click.option("--subnet", multiple=True, metavar="CIDR", help="Subnet (default: the next free /24)")
@click.option("--gateway", multiple=True, metavar="IP", help="Gateway of the subnet (default: its first address)")
@click.option("--ip-range", metavar="CIDR", help="Allocate container addresses from this part of the subnet")
@click.option("--internal", is_flag=True, help="No gateway, no masquerading: no traffic leaves the network")
@click.option("--ipv6", is_flag=True,
              help="Dual stack: an IPv4 and an IPv6 subnet (free ones for the families --subnet does not give)")
@click.option("-o", "--opt", multiple=True, metavar="KEY=VALUE", help="Driver option: parent=IF, mode=, mtu=")
@click.option("--label", multiple=True, metavar="KEY=VALUE", help="Set a label on the network")
@click.option("--interface-name", metavar="NAME", help="Name of the bridge (default kpodN)")
@click.option("--disable-dns", is_flag=True,
              help="No name resolution between the network's containers (bridge networks have it by default)")
@click.option("--ignore", is_flag=True, help="Do not fail when the network already exists")
@click.argument("name", required=False)
@click.pass_obj
def network_create(state, driver: str, subnet: tuple[str, ...], gateway: tuple[str, ...], ip_range: str | None,
                   internal: bool, ipv6: bool, opt: tuple[str, ...], label: tuple[str, ...], interface_name: str | None,
                   disable_dns: bool, ignore: bool, name: str | None) -> None:
    """Create a network; prints its name."""
    from ..errors import AlreadyExists

    hook = _backend(state)
    opts = _kv(opt, "option")
    labels = _kv(label, "label")
    if name is None:
        existing = {n["name"] for n in hook.network_list() or []}
        name = next(f"kpod{i}" for i in range(1, 100000) if f"kpod{i}" not in existing)
    elif ignore and hook.network_inspect(name=name):
        click.echo(name)
        return
    options: dict[str, Any] = {"driver": driver, "internal": internal, "labels": labels, "options": opts,
                               "dns_enabled": driver == "bridge" and not disable_dns}
    if subnet:
        options["subnet"] = list(subnet)
    if gateway:
        options["gateway"] = list(gateway)
    if ip_range:
        options["ip_range"] = ip_range
    if ipv6:
        options["ipv6"] = True
    if interface_name:
        options["interface"] = interface_name
    for k in ("mtu", "mode", "parent"):
        if k in opts:
            options[k] = opts[k]
    try:
        net = hook.network_create(name=name, options=options)
    except AlreadyExists:
        if ignore:
            click.echo(name)
            return
        raise
    click.echo(net.get("name", name) if isinstance(net, dict) else name)


def _match(net: dict, filters: dict[str, list[str]], state) -> bool:
    import re

    for key, values in filters.items():
        if key == "name":
            if not any(re.search(v, net["name"]) for v in values):
                return False
        elif key == "id":
            if not any(net["id"].startswith(v) for v in values):
                return False
        elif key == "driver":
            if net.get("driver") not in values:
                return False
        elif key == "label":
            labels = net.get("labels") or {}
            for v in values:
                k, sep, val = v.partition("=")
                if k not in labels or (sep and labels[k] != val):
                    return False
        elif key == "dangling":
            want = values[-1].lower() in ("true", "1")
            if bool(containers_using(state, net["name"])) == want:
                return False
    return True


@network.command("ls", context_settings=_CTX)
@click.option("--format", "fmt", metavar="FORMAT", help="'json' or a Go template like '{{.Name}} {{.Driver}}'")
@click.option("-q", "--quiet", is_flag=True, help="Print network names only")
@click.option("-f", "--filter", "filters", multiple=True, metavar="KEY=VALUE",
              help="name=, id=, driver=, label=, dangling=true|false")
@click.option("--no-trunc", is_flag=True, help="Do not truncate network IDs")
@click.option("--noheading", is_flag=True, help="Do not print the header row")
@click.pass_obj
def network_ls(state, fmt: str | None, quiet: bool, filters: tuple[str, ...], no_trunc: bool, noheading: bool) -> None:
    """List networks."""
    flt = _filters(filters, ("name", "id", "driver", "label", "dangling"))
    nets = [n for n in _backend(state).network_list() or [] if _match(n, flt, state)]
    if quiet:
        for n in nets:
            click.echo(n["name"])
        return
    if fmt == "json":
        click.echo(to_json(nets))
        return
    recs = [_record(n, no_trunc) for n in nets]
    if fmt:
        out = render_many(fmt, recs, noheading=noheading)
        if out:
            click.echo(out)
        return
    lines = [] if noheading else ["NETWORK ID\tNAME\tDRIVER"]
    lines += [f"{r['ID']}\t{r['Name']}\t{r['Driver']}" for r in recs]
    if lines:
        click.echo(align_tabs(lines, pad=3))


@network.command("inspect", context_settings=_CTX)
@click.option("-f", "--format", "fmt", metavar="FORMAT", help="'json' (default) or a Go template like '{{.Driver}}'")
@click.argument("names", nargs=-1, required=True)
@click.pass_obj
def network_inspect(state, fmt: str | None, names: tuple[str, ...]) -> None:
    """Display the configuration of networks as JSON."""
    out, errors = [], []
    for n in names:
        net = inspect_network(state, n)
        if net is None:
            errors.append(f"unable to find network with name or ID {n}: network not found")
            continue
        out.append(net)
    if fmt and fmt != "json":
        tpl = Template(fmt)
        for n in out:
            click.echo(tpl.render(_record(n, True)))
    else:
        click.echo(to_json(out))
    if errors:
        for e in errors[:-1]:
            _echo_err(e)
        raise NotFound(errors[-1])


def _remove_users(state, users: list, timeout: int | None) -> None:
    """rm -f the containers on a network (a pod's infra: the whole pod)."""
    provider = state.runtime.container_network_provider
    done_pods = set()
    for c in users:
        pod = provider.pod_of(c)
        try:
            if pod is not None and pod.infra_id == c.id:
                if pod.id not in done_pods:
                    pod.remove(force=True, timeout=timeout)
                    done_pods.add(pod.id)
            else:
                c.remove(force=True, timeout=timeout)
        except NotFound:
            continue


@network.command("rm", context_settings=_CTX)
@click.option("-f", "--force", is_flag=True, help="Remove the containers (and pods) using the network too")
@click.option("-t", "--time", "timeout", type=int, default=None, metavar="SECONDS",
              help="With --force, seconds to wait for containers to stop before killing them")
@click.argument("names", nargs=-1, required=True)
@click.pass_obj
def network_rm(state, force: bool, timeout: int | None, names: tuple[str, ...]) -> None:
    """Remove networks. A network used by containers needs --force, which removes them."""
    hook = _backend(state)
    code = 0
    for n in names:
        try:
            net = _network(state, n)
            users = containers_using(state, net["name"])
            if users and not force:
                raise KpodError(f'"{net["name"]}" has associated containers with it ('
                                f'{", ".join(c.name for c in users)}): use -f to remove them and the network')
            _remove_users(state, users, timeout)
            hook.network_remove(name=net["name"])
            click.echo(net["name"])
        except KpodError as exc:
            _echo_err(exc.message)
            code = 125 if not isinstance(exc, NotFound) else (code or 1)
    if code:
        raise click.exceptions.Exit(code)


@network.command("prune", context_settings=_CTX)
@click.option("-f", "--force", is_flag=True, help="Do not ask for confirmation")
@click.option("--filter", "filters", multiple=True, metavar="KEY=VALUE",
              help="label=KEY[=VALUE], label!=KEY[=VALUE] or until=TIME")
@click.pass_obj
def network_prune(state, force: bool, filters: tuple[str, ...]) -> None:
    """Remove every network no container uses (except the default network)."""
    from ..filters import PruneFilter

    flt = PruneFilter(filters)
    if not force:
        click.echo("WARNING! This will remove all networks not used by at least one container.")
        answer = click.prompt("Are you sure you want to continue? [y/N]", default="", show_default=False,
                              prompt_suffix=" ")
        if answer.strip().lower() not in ("y", "yes"):
            return
    provider = state.runtime.container_network_provider
    for name in provider.prune(lambda net: flt.match(net.get("labels"), provider.created_at(net))):
        click.echo(name)


@network.command("connect", context_settings=_CTX)
@click.option("--ip", metavar="ADDRESS", help="Static IPv4 address of the container on the network")
@click.option("--alias", "aliases", multiple=True, metavar="NAME",
              help="Another name of the container on the network (DNS)")
@click.argument("name")
@click.argument("container")
@click.pass_obj
def network_connect(state, ip: str | None, aliases: tuple[str, ...], name: str, container: str) -> None:
    """Connect a container to a network (a running one gets a new interface at once)."""
    rt = state.runtime
    c = rt.containers.get(container)
    _network(state, name)
    rt.container_network_provider.connect(c, name, ip=ip, aliases=aliases)


@network.command("disconnect", context_settings=_CTX)
@click.option("-f", "--force", is_flag=True, help="Forget the network even when detaching fails")
@click.argument("name")
@click.argument("container")
@click.pass_obj
def network_disconnect(state, force: bool, name: str, container: str) -> None:
    """Disconnect a container from a network (a running one loses that interface at once)."""
    rt = state.runtime
    c = rt.containers.get(container)
    rt.container_network_provider.disconnect(c, name, force=force)


@network.command("exists", context_settings=_CTX)
@click.argument("name")
@click.pass_obj
def network_exists(state, name: str) -> None:
    """Exit 0 if the network exists, 1 if not."""
    raise click.exceptions.Exit(0 if _backend(state).network_inspect(name=name) else 1)


# ---------------------------------------------------------------------------------------
# port
# ---------------------------------------------------------------------------------------

@click.command(context_settings=_CTX)
@click.option("-a", "--all", "all_", is_flag=True, help="Show the port mappings of every container")
@click.option("-l", "--latest", is_flag=True, help="Act on the latest container")
@click.argument("args", nargs=-1)
@click.pass_obj
def port(state, all_: bool, latest: bool, args: tuple[str, ...]) -> None:
    """List a container's published ports, or the host address of one of its ports."""
    from ..network import expand_ports

    rt = state.runtime
    mgr = rt.containers
    provider = rt.container_network_provider
    args = list(args)
    if all_ or latest:
        cs = mgr.list() if all_ else [mgr.latest()]
    else:
        if not args:
            raise InvalidArgument("you must provide a container name or ID (or --all / --latest)")
        cs = [mgr.get(args.pop(0))]
    want = None
    if args:
        if len(args) > 1:
            raise InvalidArgument("too many arguments: kpod port CONTAINER [PORT[/PROTOCOL]]")
        p, _, proto = args[0].partition("/")
        try:
            want = (int(p), (proto or "tcp").lower())
        except ValueError:
            raise InvalidArgument(f"invalid port {args[0]!r}: expected PORT[/PROTOCOL]") from None
    found = False
    for c in cs:
        for ip, hp, cp, proto in expand_ports(provider.ports_of(c)):
            host = f"{ip or '0.0.0.0'}:{hp}" if ":" not in (ip or "") else f"[{ip}]:{hp}"
            if want is not None:
                if (cp, proto) == want:
                    click.echo(host)
                    found = True
                continue
            line = f"{cp}/{proto} -> {host}"
            click.echo(f"{c.short_id}\t{line}" if all_ else line)
            found = True
    if want is not None and not found:
        raise NotFound(f'failed to find published port "{want[0]}/{want[1]}"')
