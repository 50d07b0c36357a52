"""Which process of a torchrun launch this is, from the environment (no torch needed).

torchrun sets RANK, WORLD_SIZE and LOCAL_RANK in every process it starts; a plain
`python -m training ...` has none of them and is rank 0 of 1.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Launch:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    # Started by torchrun (RANK and WORLD_SIZE set): a process group is made even for one
    # process, so `--nproc_per_node 1` runs the same code path as N.
    launched: bool = False

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Launch:
        env = os.environ if env is None else env
        try:
            world = int(env.get("WORLD_SIZE", "1"))
            rank = int(env.get("RANK", "0"))
            local = int(env.get("LOCAL_RANK", str(rank)))
        except ValueError as exc:
            raise SystemExit(f"RANK, WORLD_SIZE and LOCAL_RANK must be integers: {exc}") from None
        if world < 1 or not 0 <= rank < world or local < 0:
            raise SystemExit(
                f"bad launch environment: RANK={rank} WORLD_SIZE={world} LOCAL_RANK={local}"
            )
        return cls(rank, world, local, launched="RANK" in env and "WORLD_SIZE" in env)

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def is_main_process() -> bool:
    """Rank 0, or no torchrun at all: the process that writes files and prints results."""
    return Launch.from_env().is_main
