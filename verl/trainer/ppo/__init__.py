"""PPO-family RL for LLMs: the algorithm math lives in ``verl.trainer.ppo.core_algos``."""
