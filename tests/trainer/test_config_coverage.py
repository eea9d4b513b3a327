"""Every key of the PPO schema is known and does something: no key is accepted and then ignored.

Each leaf key is one of:
- a FIXED key (:mod:`verl.trainer.config.compat`): a value outside its accepted ones is refused before anything
  starts, with a message naming the key (checked here for every such key);
- a SAME_EITHER_WAY key: any value behaves the same here, for the reason the table gives (printed in the docs);
- read by the library: its field name is used by code outside the modules that only declare or range-check the
  schema (attribute access or the name as a string), or it is the source of a derived key that is read.
It also checks that every key of verl's composed PPO config (``verl_examples/verl_ppo_keys.txt``, from verl's
``_generated_ppo_trainer.yaml``) is a key here.
"""

import re
from functools import cache
from pathlib import Path

import pytest

import verl
from verl.trainer.config import PPOConfig, load_config, validate_config
from verl.trainer.config.compat import GLOBAL_MICRO_BATCHES, check_fixed_keys, fixed_rule, same_either_way_reason
from verl.utils.config import ConfigError, from_mapping, iter_fields

ROOT = Path(verl.__file__).parent
DECLARING = {"workers/config.py", "workers/config_sections.py", "rollout/config.py", "data/config.py", "reward/config.py",
             "trainer/config/schema.py", "trainer/config/compat.py", "trainer/config/ranges.py",
             "utils/profiler/config.py", "trainer/config/reference.py"}
KEYS = [key for key, _, _ in iter_fields(PPOConfig)]
# keys the other issues own the acceptance of (LoRA, multi-turn) are checked by their own tests
OTHERS = re.compile(r"(\.lora|lora_|\.target_modules|exclude_modules|layered_summon|multi_turn\.|"
                    r"data\.tool_config_path)")


@cache
def code_text() -> str:
    return "\n".join(p.read_text() for p in ROOT.rglob("*.py") if str(p.relative_to(ROOT)) not in DECLARING)


def is_read(key: str) -> bool:
    name = key.rsplit(".", 1)[-1]
    if re.search(rf"\.{re.escape(name)}\b|[\"']{re.escape(name)}[\"']", code_text()):
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
