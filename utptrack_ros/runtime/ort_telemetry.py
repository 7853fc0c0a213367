"""Keep onnxruntime off the network and out of the home directory.

The official onnxruntime 1.32 wheels start Microsoft's 1DS telemetry client when the module is
imported (onnxruntime's ``Privacy.md``; observed with strace, docs/security.md):

* at import it creates ``$XDG_CACHE_HOME`` (else ``~/.cache``) ``/Microsoft/DeveloperTools/.onnxruntime/``
  with ``deviceid`` (a persistent random id) and ``onnxruntime.db`` (an SQLite queue of events:
  a ``ProcessInfo`` event with the OS, CPU model, core count, memory, container / VM detection,
  network type, the Python executable's path and a hash of the device id);
* about 9 s later, and then with back-off, it resolves ``mobile.events.data.microsoft.com`` to
  POST the queue to ``https://mobile.events.data.microsoft.com/OneCollector/1.0/``.

``onnxruntime.disable_telemetry_events()`` stops neither. The environment variable
``ORT_DISABLE_TELEMETRY=1`` does (no uploader, no events, no device id), but only when it is set
before the library is imported: onnxruntime reads it once, at import.

:func:`disable_onnxruntime_telemetry` sets it unless the user chose a value;
``import utptrack_ros`` calls it, so every process that imports the package before onnxruntime
(the node, the CLIs, the tests) and every child process it starts is silent.
:func:`import_onnxruntime` is how the package imports onnxruntime.
"""
from __future__ import annotations

import logging
import os
import sys
from types import ModuleType

log = logging.getLogger(__name__)

TELEMETRY_ENV = "ORT_DISABLE_TELEMETRY"

_state = {"imported_before": False, "warned": False}


def disable_onnxruntime_telemetry() -> bool:
    """Set ``ORT_DISABLE_TELEMETRY=1`` unless it is already set (a user's explicit choice wins).

    Returns:
        True when onnxruntime's telemetry is off for this process: the variable is ``1`` and
        onnxruntime was not imported before it was set.
    """
    if TELEMETRY_ENV not in os.environ:
        if "onnxruntime" in sys.modules:
            _state["imported_before"] = True
        os.environ[TELEMETRY_ENV] = "1"
    return os.environ[TELEMETRY_ENV] == "1" and not _state["imported_before"]


def import_onnxruntime() -> ModuleType:
    """``import onnxruntime`` with its telemetry disabled first.

    Logs one warning when that was too late (onnxruntime imported before ``utptrack_ros``
    without ``ORT_DISABLE_TELEMETRY=1`` in the environment) or the user turned it back on.

    Raises:
        ModuleNotFoundError: onnxruntime is not installed.
    """
    silent = disable_onnxruntime_telemetry()
    import onnxruntime

    if not silent and not _state["warned"]:
        _state["warned"] = True
        log.warning(
            "onnxruntime telemetry is on in this process (%s): it writes a device id under "
            "~/.cache/Microsoft and contacts mobile.events.data.microsoft.com; set %s=1 in the "
            "environment before starting the process (docs/security.md)",
            "imported before utptrack_ros" if _state["imported_before"] else f"{TELEMETRY_ENV}="
            f"{os.environ.get(TELEMETRY_ENV)!r}",
            TELEMETRY_ENV,
        )
    return onnxruntime
