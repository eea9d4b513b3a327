"""``python -m verl.trainer.main_ppo key=value ...``: PPO-family training from the command line.

Everything is checked before any worker starts: the config (keys, types, batch sizes, files, device). A run
of one worker process (``nnodes=1``, ``n_gpus_per_node=1``) then runs in local mode: every role in this process,
Ray never imported (``trainer.execution_mode``). Otherwise Ray is started (a local cluster, or the existing one
named by ``ray_init.address`` / ``RAY_ADDRESS``). Then the workers, then the fit loop.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from contextlib import contextmanager

from verl.trainer.config import (
    PPOConfig,
    dump_yaml,
    format_help,
    load_config,
    resolve_device,
    resolve_execution_mode,
    validate_config,
    world_size,
)
from verl.reward.faults import RewardFaultError
from verl.single_controller.base.watchdog import WorkerCallTimeoutError
from verl.utils.cli import parse_command_line
from verl.utils.config import ConfigError

# verl's names for the dataset and sampler builders (implemented in verl.data)
from verl.data.rl_dataset import create_rl_dataset
from verl.data.sampler import create_rl_sampler

__all__ = ["create_rl_dataset", "create_rl_sampler", "main", "run_ppo", "start_ray"]


def start_ray(config: PPOConfig) -> bool:
    """Join the configured cluster or start a local one sized for the worker processes; True when this
    call connected (so the caller disconnects again), False when Ray was already initialised."""
    import ray

    if ray.is_initialized():
        return False
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    procs = world_size(config)
    threads = max(1, (os.cpu_count() or 1) // procs) if resolve_device(config) == "cpu" else 1
    env = {"TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": str(threads), "RAY_AUTH_MODE": "disabled",
           # the workers' torch.distributed timeout (verl's actor_rollout_ref.nccl_timeout)
           "VERL_DIST_INIT_TIMEOUT_S": str(config.actor_rollout_ref.nccl_timeout)}
    ray_init = config.ray_kwargs.ray_init  # follows ray_init.* unless set
    address = ray_init.address or config.ray_init.address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, runtime_env={"env_vars": env}, log_to_driver=True)
    else:
        num_cpus = ray_init.num_cpus or config.ray_init.num_cpus or max(procs, os.cpu_count() or 1)
        ray.init(num_cpus=num_cpus, include_dashboard=False, runtime_env={"env_vars": env})
    return True


def build_dataloaders(config: PPOConfig, tokenizer):
    from torch.utils.data import DataLoader

    from verl.data.rl_dataset import collate_fn, create_rl_dataset
    from verl.data.sampler import StatefulDataLoader, create_rl_sampler

    data = config.data
    train_set = create_rl_dataset(data.train_files, data, tokenizer, is_train=True)
    gen_batch_size = data.gen_batch_size or data.train_batch_size  # DAPO: prompts per generation batch
    key = "data.gen_batch_size" if data.gen_batch_size else "data.train_batch_size"
    if len(train_set) < gen_batch_size:
        raise ConfigError(f"{key}={gen_batch_size} is larger than the {len(train_set)} training rows; lower it or "
                          "add data")
    train_loader = StatefulDataLoader(train_set, batch_size=gen_batch_size,
                                      sampler=create_rl_sampler(data, train_set), collate_fn=collate_fn, drop_last=True,
                                      num_workers=data.dataloader_num_workers)
    val_loader = None
    if data.val_files:
        val_set = create_rl_dataset(data.val_files, data, tokenizer, is_train=False)
        import torch

        val_loader = DataLoader(val_set, batch_size=data.val_batch_size or len(val_set), shuffle=data.validation_shuffle,
                                collate_fn=collate_fn, num_workers=data.dataloader_num_workers,
                                generator=torch.Generator().manual_seed(data.seed))
    return train_loader, val_loader


try:
    from yaml import YAMLError as _YAMLError
except ImportError:  # pragma: no cover
    class _YAMLError(Exception):
        pass


@contextmanager
def setup_errors():
    """Turn what goes wrong while the run is set up (before Ray or any worker starts: tokenizer, data files and
    rows, reward function and manager) into a :class:`ConfigError`, which ``main`` prints as one line."""
    try:
        yield
    except ConfigError:
        raise
    except (ValueError, TypeError, KeyError, AttributeError, LookupError, OSError, ImportError,
            NotImplementedError, _YAMLError) as exc:
        text = str(exc) if isinstance(exc, (ValueError, OSError)) and str(exc) else f"{type(exc).__name__}: {exc}"
        raise ConfigError("; ".join(line.strip() for line in text.splitlines() if line.strip())) from exc


def run_ppo(config: PPOConfig) -> dict[str, float]:
    """Validate, start Ray (unless local mode), build datasets, reward functions and workers, train; returns
    the last metrics."""
    with setup_errors():
        validate_config(config)
    mode = resolve_execution_mode(config)
    if mode == "local":
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # what Ray mode gives its workers
    print(f"execution mode: {mode}" + (" (one process, no Ray)" if mode == "local" else ""), flush=True)
    from verl.reward.loop import build_reward_loop
    from verl.trainer.ppo.ray_trainer import RayPPOTrainer
    from verl.workers.fsdp_workers import load_tokenizer

    model = config.actor_rollout_ref.model
    with setup_errors():  # bad data, tokenizer or reward settings: one "config error" line, exit 2
        tokenizer = load_tokenizer(config.data.tokenizer or model.tokenizer_path or model.path,
                                   model.trust_remote_code, model.custom_chat_template)
        train_loader, val_loader = build_dataloaders(config, tokenizer)
        rewards = build_reward_loop(config, tokenizer)  # reward managers (+ a generative reward model's server)
    try:
        started = start_ray(config) if mode == "ray" else False
        trainer = RayPPOTrainer(config, tokenizer, rewards.reward_fn, rewards.val_reward_fn, train_loader, val_loader)
    except BaseException:
        rewards.close()
        raise
    try:
        trainer.init_workers()
        return trainer.fit()
    finally:
        trainer.shutdown()
        rewards.close()
        if mode == "ray" and config.ray_kwargs.timeline_json_file:
            import ray

            ray.timeline(filename=config.ray_kwargs.timeline_json_file)
        if started:
            import ray

            ray.shutdown()


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--help" in argv or "-h" in argv:
        print(format_help())
        return 0
    try:
        with setup_errors():  # a malformed YAML file, ...
            config = load_config(argv)
        if parse_command_line(argv).cfg:  # Hydra's --cfg job: print the composed, checked config; start nothing
            validate_config(config, check_environment=False)
            print(dump_yaml(config), end="")
            return 0
        run_ppo(config)
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 2
    except (RewardFaultError, WorkerCallTimeoutError) as exc:  # reported in full, without a traceback of ours
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
