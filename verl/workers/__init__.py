"""SPMD workers: the policy (actor / rollout / reference), the critic and the reward model.

Submodules are imported where used (``verl.workers.fsdp_workers``, ``verl.workers.critic``,
``verl.workers.reward_model``), so importing this package stays light.
"""
