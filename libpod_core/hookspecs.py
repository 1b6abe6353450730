"""kpod hook specifications: the contract between the core and its plugins.

Like pytest's ``hookspec`` module, every hook kpod calls is declared here, one section per
area. Plugins implement them with the :data:`libpod_core.hookimpl` marker; they may accept any
subset of a hook's arguments (pluggy passes only the ones named).

There are two kinds of plugin:

* **Drivers** — exactly one per kind is loaded, the one whose name the configuration picks
  (``runtime``, ``storage_driver``, ``network_backend``). Entry-point groups: ``kpod.runtime``,
  ``kpod.storage``, ``kpod.network``. The entry point names a class; the core instantiates it
  as ``cls(config)`` (a :class:`libpod_core.config.Config`) and registers the instance. Driver
  hooks are ``firstresult``: the single loaded driver answers. A driver must implement every
  hook marked *required* for its kind, or loading it is an error.
* **General plugins** — every entry point in ``kpod.plugins`` is loaded (unless named in the
  ``disabled_plugins`` setting / ``KPOD_DISABLED_PLUGINS``). They implement the fan-out hooks
  (OCI spec changes, OCI hooks, lifecycle events, extra transports, info). The entry point
  names a module or a class (instantiated with ``cls(config)``).

Image transports are registered through the ``kpod.transport`` group (name -> a
:class:`libpod_core.transports.Transport` subclass); the core's own transports use the same
group, so a third-party transport is added the same way. General plugins may also add
transports with :func:`kpod_transports`.

Errors: a hook reports failure by raising a :class:`libpod_core.errors.KpodError` subclass
with a one-line message; anything else is reported as an engine error.
"""

from __future__ import annotations

import pluggy

hookspec = pluggy.HookspecMarker("kpod")

# Hooks each driver kind must implement.
REQUIRED_HOOKS = {
    "runtime": (
        "runtime_command",
        "runtime_version",
        "runtime_create",
        "runtime_start",
        "runtime_state",
        "runtime_kill",
        "runtime_delete",
        "runtime_pause",
        "runtime_resume",
        "runtime_exec",
    ),
    "storage": (
        "storage_status",
        "storage_create_layer",
        "storage_apply_diff",
        "storage_diff",
        "storage_changes",
        "storage_mount",
        "storage_unmount",
        "storage_remove",
        "storage_exists",
        "storage_cleanup",
    ),
    "network": (
        "network_netns_create",
        "network_netns_remove",
        "network_setup",
        "network_teardown",
        "network_list",
        "network_create",
        "network_remove",
    ),
}


# --------------------------------------------------------------------------------------
# Runtime drivers (group ``kpod.runtime``) — mirror the OCI runtime command line.
# The container monitor (conmon) runs ``create`` and ``exec`` itself with the command line
# returned by :func:`runtime_command`; the core calls the other verbs through these hooks.
# --------------------------------------------------------------------------------------


@hookspec(firstresult=True)
def runtime_command():
    """Return the command conmon must run as the OCI runtime.

    Called when a container or exec session is created through conmon.
    Returns ``(path, global_args)``: the executable conmon gets with ``--runtime`` and the
    global options (``--root DIR`` and the like) it passes with ``--runtime-arg``. A driver
    that needs a wrapper (crun on hybrid cgroups) returns the wrapper's path. Required.
    """


@hookspec(firstresult=True)
def runtime_env():
    """Return extra environment variables (a dict) for every runtime invocation, by the
    core or by conmon (crun's wrapper learns the real crun path this way). Optional.
    """


@hookspec(firstresult=True)
def runtime_version():
    """Return the runtime's version as one string (``"runc 1.1.5 (spec 1.0.2-dev)"``).

    Called by ``kpod info`` and ``kpod version``. Required.
    """


@hookspec(firstresult=True)
def runtime_info():
    """Return a dict describing the runtime for ``kpod info``.

    Keys at least ``name``, ``path`` and ``version``; drivers may add more (``package``,
    ``features``...). Optional: the core builds one from :func:`runtime_command` and
    :func:`runtime_version` when no driver answers.
    """


@hookspec(firstresult=True)
def runtime_features():
    """Return the runtime's ``features`` document (a dict, possibly empty). Optional."""


@hookspec(firstresult=True)
def runtime_create(container_id, bundle, pid_file, console_socket):
    """``<runtime> create``: create container *container_id* from the OCI bundle directory.

    *pid_file* is where the runtime writes the init process's PID; *console_socket* is a
    socket path for the terminal master or None. Returns True. Used by the conformance suite
    and by callers that run the runtime without conmon. Required.
    """


@hookspec(firstresult=True)
def runtime_start(container_id):
    """``<runtime> start``: run the user process of a created container. Returns True. Required."""


@hookspec(firstresult=True)
def runtime_state(container_id):
    """``<runtime> state``: return the OCI state dict (``ociVersion``, ``id``, ``status``,
    ``pid``, ``bundle``, ``annotations``), or None if the runtime does not know the
    container. ``status`` is one of creating, created, running, paused, stopped. Required.
    """


@hookspec(firstresult=True)
def runtime_kill(container_id, signal, all_processes):
    """``<runtime> kill``: send *signal* (a number or a name like ``"TERM"``) to the
    container's init process (to every process when *all_processes*). Returns True. Required.
    """


@hookspec(firstresult=True)
def runtime_delete(container_id, force):
    """``<runtime> delete``: remove the runtime's record of the container (with *force*,
    kill it first). Deleting an unknown container is not an error. Returns True. Required.
    """


@hookspec(firstresult=True)
def runtime_pause(container_id):
    """``<runtime> pause``: freeze every process of the container. Returns True. Required."""


@hookspec(firstresult=True)
def runtime_resume(container_id):
    """``<runtime> resume``: thaw a paused container. Returns True. Required."""


@hookspec
def runtime_prepare_spec(container_id, spec):
    """Optional: the runtime driver's last change to the OCI *spec* (a dict, changed in
    place) of the bundle from which the runtime is about to create *container_id*, after the
    hooks.d directories, :func:`oci_hooks` and :func:`oci_spec_modify`. For what only this
    runtime understands (crun's ``run.oci.*`` annotations); the spec kpod keeps and shows is
    not changed. Returns None."""


@hookspec(firstresult=True)
def runtime_exec(container_id, process_file, detach, pid_file, console_socket):
    """``<runtime> exec --process FILE``: run an extra process in a running container.

    *process_file* is a JSON OCI ``process`` object. With *detach* the call returns once the
    process started; otherwise it waits and returns its exit code. Used without conmon
    (conformance suite); kpod's ``exec`` goes through conmon. Required.
    """


# --------------------------------------------------------------------------------------
# Storage drivers (group ``kpod.storage``) — mirror containers/storage's graph driver.
# Layers are addressed by ID only (never a user-chosen name). The driver keeps its data
# under ``<graphroot>/<driver name>``.
# --------------------------------------------------------------------------------------


@hookspec(firstresult=True)
def storage_status():
    """Return a list of ``(key, value)`` string pairs describing the driver for ``kpod
    info`` (backing filesystem, native diff support...). Required.
    """


@hookspec(firstresult=True)
def storage_create_layer(layer_id, parent_id, read_write):
    """Create an empty layer *layer_id* on top of *parent_id* (None for a base layer).

    *read_write* is True for a container's writable layer. Creating an existing ID is an
    :class:`~libpod_core.errors.AlreadyExists` error. Returns True. Required.
    """


@hookspec(firstresult=True)
def storage_apply_diff(layer_id, parent_id, stream):
    """Apply a layer tar stream (plain, gzip or zstd) to the freshly created *layer_id*.

    Returns a :class:`libpod_core.tarapply.ApplyResult` (uncompressed ``size`` and
    ``diff_id``). A hostile or corrupt stream raises
    :class:`~libpod_core.errors.InvalidLayer`; the caller then removes the layer. Required.

    The store passes a :class:`libpod_core.digest.HashedTarStream`: the plain tar, read
    ahead (fetched, verified, inflated) and hashed in a second thread;
    :func:`libpod_core.tarapply.apply_layer` takes the diff ID from it rather than hashing
    again, and a driver that extracts in its own way can read ``stream.digest`` after
    reading the stream to its end.
    """


@hookspec(firstresult=True)
def storage_diff(layer_id, parent_id, out):
    """Write the uncompressed tar of *layer_id*'s changes against *parent_id* to the binary
    file object *out* (docker layer format: ``.wh.`` whiteouts). Returns ``(size,
    diff_id)``. The same layer always gives the same bytes. Required.
    """


@hookspec(firstresult=True)
def storage_changes(layer_id, parent_id):
    """Return the layer's changes as a list of ``(kind, path)`` with kind ``"A"`` (added),
    ``"C"`` (changed) or ``"D"`` (deleted), sorted by path. Required.
    """


@hookspec(firstresult=True)
def storage_mount(layer_id, mount_label, volatile):
    """Make the full filesystem of *layer_id* (with its parents) available and return its
    path (``get`` in graph-driver terms). Mounts are counted: every call must be matched by
    :func:`storage_unmount`. *volatile* True says the data need not survive a crash (a
    ``--rm`` container's layer), so the driver may skip syncing it (overlay: the
    ``volatile`` mount option, which also spares the unmount a sync of the whole upper
    file system); a driver may ignore it and need not declare the argument. Required.
    """


@hookspec(firstresult=True)
def storage_unmount(layer_id, force):
    """Release one reference taken by :func:`storage_mount` (``put``); the last release
    (or *force*) unmounts. Returns True if the layer is no longer mounted. Required.
    """


@hookspec(firstresult=True)
def storage_mounted(layer_id):
    """Return the mount path if *layer_id* is mounted, else None. Optional."""


@hookspec(firstresult=True)
def storage_remove(layer_id):
    """Remove *layer_id*'s data (unmounting it first). Removing a missing layer is not an
    error. Returns True. Required.
    """


@hookspec(firstresult=True)
def storage_exists(layer_id):
    """Return True if the driver holds data for *layer_id*. Required."""


@hookspec(firstresult=True)
def storage_layer_size(layer_id):
    """Return the bytes used by *layer_id*'s own data (not its parents). Optional."""


@hookspec(firstresult=True)
def storage_list_layers():
    """Return the IDs of every layer the driver holds data for (``kpod system check``
    compares them with the state database). Optional.
    """


@hookspec(firstresult=True)
def storage_cleanup():
    """Unmount everything the driver mounted (``kpod system reset``, test clean-up).
    Returns True. Required.
    """


# --------------------------------------------------------------------------------------
# Network backends (group ``kpod.network``) — mirror CNI's ADD / DEL / CHECK.
# --------------------------------------------------------------------------------------


@hookspec(firstresult=True)
def network_netns_create(name):
    """Create a new persistent network namespace for a container or pod and return its
    path (a bind mount kept under the runroot, like ``ip netns add`` does under /run/netns).
    The namespace has its loopback device up. Required.
    """


@hookspec(firstresult=True)
def network_netns_remove(path):
    """Unmount and remove a namespace made by :func:`network_netns_create`. A missing path
    is not an error. Returns True. Required.
    """


@hookspec(firstresult=True)
def network_setup(container_id, netns_path, networks, port_mappings, options):
    """Attach the network namespace at *netns_path* to *networks* (``{name: {"ip": ...,
    "mac": ..., "aliases": [...]}}``) and publish *port_mappings* (a list of dicts
    ``host_ip, host_port, container_port, protocol``). *options* carries extra per-container
    settings. Returns ``{network name: result}`` where each result is a CNI-style dict with
    ``interfaces``, ``ips`` (``address`` CIDR, ``gateway``), ``routes`` and ``dns``. On
    failure everything set up so far is torn down before raising. Required.
    """


@hookspec(firstresult=True)
def network_teardown(container_id, netns_path, networks, port_mappings):
    """Detach the container from *networks* (CNI DEL) and release its addresses and port
    rules. Must succeed even when the namespace is already gone. Returns True. Required.
    """


@hookspec(firstresult=True)
def network_check(container_id, netns_path, networks, port_mappings):
    """Verify the container's networking is still as set up (CNI CHECK). Returns True or
    raises :class:`~libpod_core.errors.NetworkError`. Optional.
    """


@hookspec(firstresult=True)
def network_list():
    """Return a list of network dicts (``name``, ``driver``, ``subnets``, ``internal``,
    ``labels``...). The backend creates the default network on first use. Required.
    """


@hookspec(firstresult=True)
def network_inspect(name):
    """Return one network's dict (see :func:`network_list`) or None. Optional."""


@hookspec(firstresult=True)
def network_create(name, options):
    """Create network *name* (*options*: ``driver``, ``subnet``, ``gateway``,
    ``internal``, ``labels``, ``ipv6`` (dual stack: a free subnet for each family no
    ``subnet`` gives)...). Returns its dict. Required.
    """


@hookspec(firstresult=True)
def network_remove(name):
    """Remove network *name*. Callers check it is unused. Returns True. Required."""


@hookspec(firstresult=True)
def network_info():
    """Return a dict for ``kpod info`` (backend, plugin dirs, config dir). Optional."""


# --------------------------------------------------------------------------------------
# Image transports (group ``kpod.transport``) — mirror containers/image.
# --------------------------------------------------------------------------------------


@hookspec
def kpod_transports(config):
    """Return a list of extra :class:`libpod_core.transports.Transport` subclasses.

    Called once when a reference's transport is not found in the ``kpod.transport``
    entry-point group. Fan-out: every general plugin may add transports.
    """


# --------------------------------------------------------------------------------------
# OCI hooks and spec changes — fan-out hooks for general plugins.
# --------------------------------------------------------------------------------------


@hookspec
def oci_spec_modify(spec, container):
    """Change the OCI runtime *spec* (a dict, changed in place) before the container is
    created. *container* is the container's configuration dict (``id``, ``name``,
    ``image``, ``labels``, ``annotations``...). Called after the hooks.d directories were
    applied. Returns None. Fan-out: every plugin is called.
    """


@hookspec
def oci_hooks(spec, container):
    """Return extra OCI hooks as ``{stage: [hook, ...]}`` where stage is one of
    ``prestart``, ``createRuntime``, ``createContainer``, ``startContainer``, ``poststart``,
    ``poststop`` and each hook is a runtime-spec hook dict (``path``, ``args``, ``env``,
    ``timeout``). Called before :func:`oci_spec_modify`. Fan-out; results are appended.
    """


# --------------------------------------------------------------------------------------
# Lifecycle events and info — fan-out hooks for general plugins.
# --------------------------------------------------------------------------------------


@hookspec
def container_event(event, container):
    """Called after a container lifecycle event: ``create``, ``init``, ``start``, ``stop``,
    ``kill``, ``pause``, ``unpause``, ``died``, ``remove``, ``rename``, ``exec``. *container*
    is the container's configuration dict. Exceptions are logged, never fatal. Returns None.
    """


@hookspec
def image_event(event, image):
    """Called after an image event: ``pull``, ``push``, ``load``, ``save``, ``tag``,
    ``untag``, ``remove``, ``import``, ``commit``. *image* is a dict with ``id`` and
    ``names``. Exceptions are logged, never fatal. Returns None.
    """


@hookspec
def kpod_info(config):
    """Return a dict merged into ``pluginInfo`` in ``kpod info``. Fan-out."""
