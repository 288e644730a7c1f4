"""Run the chart's Argo CD Lua scripts the way Argo CD does, without Argo CD.

Argo CD runs health checks and resource actions in gopher-lua, a Lua 5.1, with only the
package, base, table and a reduced os library open (no string, math, io or debug library, and
strings have no methods), and the object as the global `obj`. `lupa.lua51` embeds the
reference Lua 5.1; each run gets a fresh interpreter with the other libraries removed, so a
script that would fail in Argo CD for want of `string.format` fails here too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lupa.lua51 as lua51

from .chart import CHART

SCRIPTS = CHART / "files" / "argocd"
ACTIONS = ("approve", "promote", "rollback", "pause", "resume")

# What Argo CD's sandbox lacks: removed before the script runs. String methods go with the
# string library's metatable on strings (`("x"):sub(1)` fails in Argo CD as well).
_SANDBOX = """
debug.setmetatable("", nil)
string, math, io, debug, coroutine = nil, nil, nil, nil, nil
os = {time = os.time, date = os.date, clock = os.clock}
"""


def _to_lua(runtime: Any, value: Any) -> Any:
    if isinstance(value, dict):
        return runtime.table_from({k: _to_lua(runtime, v) for k, v in value.items()})
    if isinstance(value, list | tuple):
        return runtime.table_from([_to_lua(runtime, v) for v in value])
    return value


def _from_lua(value: Any) -> Any:
    """A Lua table as Argo CD's JSON encoder writes it: keys 1..n (or none) make a list."""
    if lua51.lua_type(value) != "table":
        return value
    items = dict(value.items())
    if list(items) == list(range(1, len(items) + 1)):
        return [_from_lua(v) for v in items.values()]
    return {str(k): _from_lua(v) for k, v in items.items()}


def _restore_empty_objects(new: Any, old: Any) -> Any:
    """What Argo CD does to an action's result before patching: an empty table came back as
    `[]`, so where the object had a map there, the map is kept."""
    if isinstance(new, dict) and isinstance(old, dict):
        return {k: _restore_empty_objects(v, old.get(k)) for k, v in new.items()}
    if isinstance(new, list) and isinstance(old, dict) and not new:
        return old
    if isinstance(new, list) and isinstance(old, list):
        return [_restore_empty_objects(n, o) for n, o in zip(new, old, strict=False)] + new[
            len(old) :
        ]
    return new


def run_script(script: Path | str, obj: dict[str, Any]) -> Any:
    """The script's return value (as Python data) for the object `obj`; LuaError if it fails."""
    source = Path(SCRIPTS / script).read_text()
    runtime = lua51.LuaRuntime(unpack_returned_tuples=False)
    runtime.execute(_SANDBOX)
    runtime.globals().obj = _to_lua(runtime, obj)
    return _from_lua(runtime.execute(source))


def health(kind: str, obj: dict[str, Any]) -> tuple[str, str]:
    """(status, message) of the health check of `kind` (ModelDeployment, ChampionChallenger)."""
    result = run_script(f"{kind.lower()}-health.lua", obj)
    return result["status"], result.get("message", "")


def discovery(obj: dict[str, Any]) -> dict[str, bool]:
    """Action name -> enabled, as the Argo CD UI would offer them for `obj`."""
    found = run_script("actions/discovery.lua", obj)
    return {name: not spec.get("disabled", False) for name, spec in found.items()}


def action(name: str, obj: dict[str, Any]) -> dict[str, Any]:
    """The object the action returns (Argo CD patches the difference into the cluster)."""
    result = run_script(f"actions/{name}.lua", obj)
    assert isinstance(result, dict), f"action {name} returned {result!r}"
    return _restore_empty_objects(result, obj)
