#!/usr/bin/env bash
# PPO (GAE with a critic) on GSM8K with Qwen2.5-0.5B-Instruct on one GPU.
#
# Before: python -m verl.data.preprocess.gsm8k --local_dir ~/data/gsm8k, and a local copy of the model.
set -euo pipefail
MODEL=${MODEL:-$HOME/models/Qwen2.5-0.5B-Instruct}
DATA=${DATA:-$HOME/data/gsm8k}

# algorithm.adv_estimator=gae                      PPO's advantages from a learned value function (the critic)
# algorithm.gamma=1.0 algorithm.lam=1.0            GAE discount and lambda (1.0 / 1.0: Monte-Carlo returns)
# algorithm.use_kl_in_reward=false                 no KL penalty in the reward (set true + kl_ctrl.kl_coef to add it)
# critic.model.path                                the value model's body (here the same checkpoint as the actor)
# critic.optim.lr=1e-5                             critics usually take a larger LR than the policy
# critic.ppo_micro_batch_size_per_gpu=16           critic forward/backward batch on one GPU
# trainer.critic_warmup=0                          steps that train only the critic before the actor moves
python -m verl.trainer.main_ppo \
    algorithm.adv_estimator=gae algorithm.gamma=1.0 algorithm.lam=1.0 algorithm.use_kl_in_reward=false \
    data.train_files="$DATA/train.parquet" data.val_files="$DATA/test.parquet" \
    data.train_batch_size=256 data.max_prompt_length=512 data.max_response_length=512 \
    actor_rollout_ref.model.path="$MODEL" \
    actor_rollout_ref.actor.optim.lr=1e-6 \
    actor_rollout_ref.actor.ppo_mini_batch_size=64 actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=16 \
    actor_rollout_ref.rollout.name=native actor_rollout_ref.rollout.n=1 \
    actor_rollout_ref.rollout.gpu_memory_utilization=0.4 \
    actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=32 \
    critic.model.path="$MODEL" critic.optim.lr=1e-5 \
    critic.ppo_mini_batch_size=64 critic.ppo_micro_batch_size_per_gpu=16 \
    trainer.critic_warmup=0 trainer.device=cuda trainer.n_gpus_per_node=1 \
    trainer.logger=[console,file] trainer.project_name=verl_ppo_gsm8k trainer.experiment_name=qwen2.5_0.5b \
    trainer.save_freq=20 trainer.test_freq=5 trainer.total_epochs=15 "$@"
