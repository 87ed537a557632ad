"""The World in one process: shards, seeds, the environment contract and no-op collectives."""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist
from distributed_helpers import sgd_trainer

from vaekit.errors import CheckpointError, ConfigError
from vaekit.training.distributed import World, env_world, process_group


@pytest.mark.parametrize("size", [1, 2, 3, 4])
@pytest.mark.parametrize("batch", [1, 7, 20])
def test_shards_are_disjoint_contiguous_and_cover_the_global_batch(size: int, batch: int) -> None:
    global_batch = torch.randperm(100)[:batch]
    shards = [World(rank, size).shard(global_batch) for rank in range(size)]
    assert torch.equal(torch.cat(shards), global_batch)  # in rank order: contiguous slices
    sizes = [len(s) for s in shards]
    assert max(sizes) - min(sizes) <= 1


def test_rank_seeds_are_distinct_and_rank_0_keeps_the_seed() -> None:
    seeds = [World(rank, 4).seed(7) for rank in range(4)]
    assert seeds[0] == 7 and len(set(seeds)) == 4
    assert seeds == [World(rank, 4).seed(7) for rank in range(4)]  # a function of (seed, rank)
    assert World(1, 4).seed(8) != seeds[1]


def test_one_process_collectives_change_nothing() -> None:
    world = World()
    x = torch.arange(3.0)
    world.sum_([x])
    world.broadcast_([x])
    assert torch.equal(x, torch.arange(3.0))
    assert world.max(5) == 5 and world.all_gather_object("a") == ["a"]
    objective = torch.tensor(2.0)
    assert world.all_reduce_gradients([], objective) is objective
    assert world.run_on_main(lambda: 3) == 3
    assert world.device(torch.device("cuda")) == torch.device("cuda")


def test_environment_contract(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert env_world().size == 1
    with process_group(torch.device("cpu")) as world:  # plain run: no group is created
        assert world.size == 1 and not dist.is_initialized()
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ConfigError, match="launch with torchrun"):
        env_world()  # no RANK
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("LOCAL_RANK", "1")
    world = env_world()
    assert (world.rank, world.size, world.local_rank, world.is_main) == (1, 2, 1, False)
    assert world.device(torch.device("cuda")) == torch.device("cuda", 1)


def test_a_state_from_another_world_size_is_refused() -> None:
    trainer = sgd_trainer("ae", batch_size=20)
    state = trainer.state_dict()
    assert state["world_size"] == 1 and "ranks" not in state
    trainer.load_state_dict(state)  # the same world size loads
    with pytest.raises(CheckpointError, match=r"written by 2 process\(es\) and this run has 1"):
        trainer.load_state_dict({**state, "world_size": 2})
