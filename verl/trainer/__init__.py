"""Training entry points and the RL algorithm layer (see ``verl.trainer.ppo``)."""
