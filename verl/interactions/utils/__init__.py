from verl.interactions.utils.interaction_registry import initialize_interactions_from_config

__all__ = ["initialize_interactions_from_config"]
