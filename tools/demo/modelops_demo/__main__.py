"""Entry point of `make demo` (the orchestration lands with the ChampionChallenger controller)."""

from __future__ import annotations


def main() -> int:
    raise SystemExit("the demo is not assembled yet")


if __name__ == "__main__":
    raise SystemExit(main())
