"""Every key of the PPO schema is known and does something: no key is accepted and then ignored.

Each leaf key is one of:
- a FIXED key (:mod:`verl.trainer.config.compat`): a value outside its accepted ones is refused before anything
  starts, with a message naming the key (checked here for every such key);
- a SAME_EITHER_WAY key: any value behaves the same here, for the reason the table gives (printed in the docs);
- read by the library, by its full dotted path (``tests/trainer/config_reads.py``): code outside the modules that
  only declare or range-check the schema reads that field from an expression holding that key's section (its
  dataclass, inferred from annotations and assignments). Where a section is handed on whole and read generically
  (:data:`GENERIC`, with the reason), or where only one class of the schema has a field of that name, a read of the
  field name is enough. A key that is the source of a derived key that is read counts as read.
It also checks that every key of verl's composed PPO config (``verl_examples/verl_ppo_keys.txt``, from verl's
``_generated_ppo_trainer.yaml``) is a key here.
"""

import dataclasses
import fnmatch
import re
import sys
from functools import cache
from pathlib import Path

import pytest

import verl
from verl.trainer.config import PPOConfig, load_config, validate_config
from verl.trainer.config.compat import GLOBAL_MICRO_BATCHES, check_fixed_keys, fixed_rule, same_either_way_reason
from verl.utils.config import ConfigError, from_mapping, iter_fields

sys.path.insert(0, str(Path(__file__).parent))
ROOT = Path(verl.__file__).parent
DECLARING = {"workers/config.py", "workers/config_sections.py", "rollout/config.py", "data/config.py", "reward/config.py",
             "trainer/config/schema.py", "trainer/config/compat.py", "trainer/config/ranges.py",
             "utils/profiler/config.py", "trainer/config/reference.py"}
KEYS = [key for key, _, _ in iter_fields(PPOConfig)]
# keys the other issues own the acceptance of (LoRA, multi-turn) are checked by their own tests
OTHERS = re.compile(r"(\.lora|lora_|\.target_modules|exclude_modules|layered_summon|multi_turn\.|"
                    r"data\.tool_config_path)")


# sections handed on whole and read by field name without a type the analysis can follow: a read of the field's
# name counts for them (``pattern: why``)
GENERIC = {
    "*.profiler": "profiler sections go whole to verl.utils.profiler, which reads them untyped",
    "global_profiler.global_tool_config.*": "tool options go whole to torch.profiler / the memory recorder",
    "actor_rollout_ref.rollout": "the rollout section goes whole to the engines (sampling keys read by name)",
    "actor_rollout_ref.rollout.val_kwargs": "read by name with the sampling keys of the rollout section",
    "actor_rollout_ref.actor": "the actor section goes to the workers as a plain mapping",
    "actor_rollout_ref.ref": "the reference section goes to the workers as a plain mapping",
    "critic": "the critic section goes to its worker as a plain mapping",
    "*.model": "model sections are loaded by the shared model-loading code",
    "reward_model": "the reward manager's keys are read from a plain dict (verl.reward.loader)",
    "reward_model.overlong_buffer": "read from a plain dict by the dapo reward manager",
    "reward_manager": "read from a plain dict (verl.reward.loader)",
    "custom_reward_function": "read from a plain dict (verl.reward.loader)",
    "data": "the data section goes to the dataset as a plain mapping",
}
FILES = [p for p in ROOT.rglob("*.py") if str(p.relative_to(ROOT)) not in DECLARING]


@cache
def code_text() -> str:
    return "\n".join(p.read_text() for p in FILES)


@cache
def reads():
    from config_reads import read_fields

    return read_fields(PPOConfig, FILES)


@cache
def owners() -> dict[str, int]:
    """How many classes of the schema have a field of each name."""
    from config_reads import schema_classes

    classes = set().union(*schema_classes(PPOConfig).values())
    count: dict[str, int] = {}
    for cls in classes:
        for f in dataclasses.fields(cls):
            count[f.name] = count.get(f.name, 0) + 1
    return count


def is_read(key: str) -> bool:
    from config_reads import is_read_path

    section, _, name = key.rpartition(".")
    if is_read_path(key, PPOConfig, reads()):
        return True
    by_name = owners().get(name, 0) == 1 or any(fnmatch.fnmatchcase(section, p) for p in GENERIC)
    if by_name and re.search(rf"\.{re.escape(name)}\b|[\"']{re.escape(name)}[\"']", code_text()):
        return True
    if any(key == f"{path}.{global_key}" for path, global_key, _ in GLOBAL_MICRO_BATCHES):
        return True  # verl's global micro-batch sizes: divided over the ranks by compat.per_gpu_sizes
    # the source of a derived key that is read (e.g. optim.clip_grad -> grad_clip)
    return any(source == key and is_read(target) for target, source in PPOConfig.derived_defaults.items())


def with_value(key: str, value, base):
    tree: dict = {}
    node = tree
    *parents, leaf = key.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = value
    return from_mapping(PPOConfig, tree, base=base)


def refused_value(key: str, accepted, base):
    """``base`` with the key set to a value of its type outside ``accepted`` (the schema takes it, the rule must not)."""
    for candidate in (True, False, 7, 0.5, "zzz", [3], None):
        if any(candidate == a and type(candidate) is type(a) for a in accepted) or candidate in accepted:
            continue
        try:
            return with_value(key, candidate, base)
        except ConfigError:
            continue
    raise AssertionError(f"no value of {key}'s type outside {accepted}")


@cache
def base_config():
    return load_config(["actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=4", "critic.ppo_micro_batch_size_per_gpu=4"])


@pytest.mark.parametrize("key", [k for k in KEYS if fixed_rule(k)])
def test_fixed_keys_refuse_other_values_naming_the_key(key):
    accepted, why = fixed_rule(key)
    config = refused_value(key, accepted, base_config())
    with pytest.raises(ConfigError, match=re.escape(key)):
        check_fixed_keys(config, ranks=8)  # the first check of validate_config (see the next test)
    assert why


def test_validate_config_refuses_fixed_keys_before_anything_else():
    config = with_value("actor_rollout_ref.actor.router_replay.mode", "R3", base_config())
    with pytest.raises(ConfigError, match="router_replay.mode='R3' is not supported: MoE router replay"):
        validate_config(config, check_environment=False)


def test_every_key_is_fixed_same_either_way_or_read():
    unread = [k for k in KEYS if not (fixed_rule(k) or same_either_way_reason(k) or OTHERS.search(k) or is_read(k))]
    assert not unread, f"keys accepted but never read: {unread}"


def test_every_key_of_verls_composed_config_is_known():
    text = (Path(__file__).with_name("verl_examples") / "verl_ppo_keys.txt").read_text()
    verl_keys = [line for line in text.splitlines() if line and not line.startswith("#")]
    ours = set(KEYS)
    free_form = [k for k in KEYS if isinstance(dict(((k2, d) for k2, d, _ in iter_fields(PPOConfig)))[k], dict)]
    missing = [k for k in verl_keys if k not in ours and not OTHERS.search(k)
               and not any(k.startswith(f + ".") for f in free_form)  # an entry of a free-form mapping
               and not any(o.startswith(k + ".") for o in ours)]  # verl's one interpolated node, a section here
    assert not missing, f"verl keys unknown here: {missing}"


def test_reads_are_told_apart_by_full_path(tmp_path):
    """``dtype`` read from the actor's rollout section does not make ``reward_model.rollout.dtype`` read."""
    from config_reads import is_read_path, read_fields

    code = tmp_path / "user.py"
    code.write_text("def engine(config: PPOConfig):\n"
                    "    ro = config.actor_rollout_ref.rollout\n"
                    "    return ro.dtype, config.reward_model.rollout.prompt_length\n")
    found = read_fields(PPOConfig, [code])
    assert is_read_path("actor_rollout_ref.rollout.dtype", PPOConfig, found)
    assert not is_read_path("reward_model.rollout.dtype", PPOConfig, found)
    assert is_read_path("reward_model.rollout.prompt_length", PPOConfig, found)
    assert not is_read_path("actor_rollout_ref.rollout.prompt_length", PPOConfig, found)
    assert is_read_path("reward_model.rollout.dtype", PPOConfig, reads()), "verl.reward.loop reads it"
