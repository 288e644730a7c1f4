"""Command-line plumbing shared by the serving programs.

Pods are configured through environment variables far more often than through arguments, so
every flag gets an environment variable (``--metrics-port`` -> ``MODELOPS_METRICS_PORT``) that
supplies its default; an explicit flag still wins.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from typing import Any


def env_name(flag: str) -> str:
    return "MODELOPS_" + flag.lstrip("-").upper().replace("-", "_")


class EnvArgumentParser(argparse.ArgumentParser):
    """An ArgumentParser whose flags fall back to ``MODELOPS_*`` environment variables."""

    def add_flag(self, flag: str, **kwargs: Any) -> argparse.Action:
        variable = env_name(flag)
        raw = os.environ.get(variable)
        action = kwargs.get("action")
        if raw is not None and raw != "":
            if action == "store_true":
                kwargs["default"] = raw.strip().lower() in {"1", "true", "yes", "on"}
            else:
                kwargs["default"] = raw
            # A value from the environment satisfies a required flag.
            kwargs["required"] = False
        help_text = kwargs.get("help", "")
        kwargs["help"] = f"{help_text} [env {variable}]".strip()
        return self.add_argument(flag, **kwargs)


def configure_logging(level: str = "INFO") -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def install_fast_event_loop() -> str:
    """Use uvloop when it is installed (``MODELOPS_EVENT_LOOP=asyncio`` opts out)."""
    if os.environ.get("MODELOPS_EVENT_LOOP", "auto") == "asyncio":
        return "asyncio"
    try:
        import uvloop
    except ImportError:
        return "asyncio"
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return "uvloop"


def fail(message: str, termination_log: str | None = None) -> int:
    """Report a fatal start-up error on stderr and, in a pod, in the termination message.

    Kubernetes shows the termination-log file in the container status, which is where the
    operator reads why a model refused to load (for example a digest mismatch).
    """
    print(f"error: {message}", file=sys.stderr)
    if termination_log:
        try:
            with open(termination_log, "w", encoding="utf-8") as handle:
                handle.write(message[:4000])
        except OSError:
            pass
    return 2
