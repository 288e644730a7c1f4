"""How many threads the Go data plane runs Go code on (--procs), and the runtime default its
build links in (docs/serving.md, "Threads")."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from serving_helpers import (
    Program,
    data_plane_command,
    router,
    router_config,
    sidecar,
    write_config,
)

pytestmark = pytest.mark.slow


def started_procs(program: Program, log_dir: Path) -> int:
    """The `procs` the program's "listening" line reports once it listens."""
    program.start(log_dir)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            found = re.search(r"msg=listening .*procs=(\d+)", program.log())
            if found:
                return int(found.group(1))
            assert program.alive(), program.log()
            time.sleep(0.05)
        raise AssertionError(f"{program.name} did not start:\n{program.log()}")
    finally:
        program.stop()


# Any URL: the sidecar does not call its upstream before a request comes.
UPSTREAM = Program("upstream", [], port=9)


@pytest.mark.parametrize(("extra", "env", "expected"), [
    ((), {}, 1),                              # the sidecar's default
    (("--procs", "2"), {}, 2),                # the flag
    ((), {"MODELOPS_PROCS": "3"}, 3),         # its variable
    ((), {"GOMAXPROCS": "2"}, 2),             # the Go runtime's own variable is honoured
    (("--procs", "1"), {"GOMAXPROCS": "2"}, 1),  # and the flag wins over it
])
def test_the_sidecar_runs_go_code_on_the_threads_asked_for(
        extra: tuple[str, ...], env: dict[str, str], expected: int, tmp_path: Path) -> None:
    program = sidecar(UPSTREAM, "fraud", "v1", "champion", *extra)
    program.env.update(env)
    assert started_procs(program, tmp_path) == expected


def test_the_router_defaults_to_one_thread_too(tmp_path: Path) -> None:
    config = tmp_path / "router.json"
    write_config(config, router_config("http://127.0.0.1:9", None))
    assert started_procs(router(config), tmp_path) == 1


@pytest.mark.parametrize("value", ["-1", "1025", "two"])
def test_a_bad_procs_value_is_refused_by_name(value: str, tmp_path: Path) -> None:
    program = sidecar(UPSTREAM, "fraud", "v1", "champion", "--procs", value)
    program.start(tmp_path)
    assert program.process is not None
    assert program.process.wait(20) == 2
    assert "--procs" in program.log() or "-procs" in program.log(), program.log()


def test_the_installed_binary_links_in_the_scheduler_default() -> None:
    """dataplane/build.sh links `schedtrace=2147483647` in as the runtime's GODEBUG default,
    which keeps sysmon out of its deep sleep (measured: three fewer context switches per request
    at c=1). A binary built another way would still work, only slower: this catches the build
    of `make install` losing it."""
    binary = Path(data_plane_command("modelops-sidecar")[0]).resolve()
    assert b"schedtrace=2147483647" in binary.read_bytes()
