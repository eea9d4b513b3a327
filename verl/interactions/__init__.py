"""Simulated users for multi-turn rollouts: verl's :class:`BaseInteraction` contract and the GSM8K interaction."""

from verl.interactions.base import BaseInteraction

__all__ = ["BaseInteraction"]
