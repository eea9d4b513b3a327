"""``python -m verl.trainer.config``: print the default config as YAML (this is how ppo_trainer.yaml is made)."""

from verl.trainer.config.loader import dump_yaml

print(dump_yaml(), end="")
