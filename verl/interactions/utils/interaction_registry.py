"""Interactions from an interaction YAML, as verl writes it::

    interaction:
      - name: gsm8k                                             # what extra_info.interaction_kwargs.name selects
        class_name: verl.interactions.gsm8k_interaction.Gsm8kInteraction
        config: {}
"""

from __future__ import annotations

import os

from verl.interactions.base import BaseInteraction

__all__ = ["initialize_interactions_from_config"]


def initialize_interactions_from_config(interaction_config_file: str) -> dict[str, BaseInteraction]:
    """``{name: interaction}`` for every entry (the name defaults to the class's ``name``); names are unique."""
    import yaml

    from verl.tools.utils.tool_registry import get_tool_class

    path = os.path.expanduser(interaction_config_file)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"actor_rollout_ref.rollout.multi_turn.interaction_config_path={path!r} does not exist")
    with open(path) as f:
        raw = yaml.safe_load(f) or {}
    entries = raw.get("interaction") if isinstance(raw, dict) else None
    if not isinstance(entries, list):
        raise ValueError(f"{path}: expected a top-level 'interaction:' list of {{name, class_name, config}}")
    out: dict[str, BaseInteraction] = {}
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or not isinstance(entry.get("class_name"), str):
            raise ValueError(f"{path}: interaction[{i}] needs a string class_name, got {entry!r:.200}")
        config = dict(entry.get("config") or {})
        if entry.get("name"):
            config["name"] = entry["name"]
        interaction = get_tool_class(entry["class_name"])(config)
        if interaction.name in out:
            raise ValueError(f"{path}: interaction name {interaction.name!r} appears more than once")
        out[interaction.name] = interaction
    return out
