#!/usr/bin/env bash
# GRPO on GSM8K with Qwen2.5-0.5B-Instruct on one GPU (scale n_gpus_per_node / nnodes for more).
#
# Before: a local copy of the model (no downloads at run time) and the data:
#   python -m verl.data.preprocess.gsm8k --local_dir ~/data/gsm8k          # or --data_source /path/to/local/gsm8k
set -euo pipefail
MODEL=${MODEL:-$HOME/models/Qwen2.5-0.5B-Instruct}   # a transformers directory (config.json + weights + tokenizer)
DATA=${DATA:-$HOME/data/gsm8k}

# algorithm.adv_estimator=grpo                     group-relative advantages: no critic
# data.train_batch_size=256                        prompts per step (global)
# data.max_prompt_length / max_response_length     left-padded prompt / right-padded response lengths (tokens)
# actor_rollout_ref.actor.ppo_mini_batch_size=64   prompts per optimizer step (global) -> 4 updates per step
# actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=16   sequences per forward/backward on one GPU (memory only)
# actor_rollout_ref.actor.use_kl_loss=true         GRPO's KL(actor || ref) loss term, weighted by kl_loss_coef
# actor_rollout_ref.actor.kl_loss_type=low_var_kl  the k3 estimator
# actor_rollout_ref.rollout.name=native            this library's engine (static KV cache, CUDA graphs)
# actor_rollout_ref.rollout.n=8                    responses per prompt (the group)
# actor_rollout_ref.rollout.gpu_memory_utilization=0.5   share of GPU memory the KV cache may take
# actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=32   forward batch of the old/ref log-prob passes
# trainer.logger=[console,file]                    a table per step, and metrics.jsonl in default_local_dir
# trainer.save_freq / test_freq                    checkpoint / validate every N steps
python -m verl.trainer.main_ppo \
    algorithm.adv_estimator=grpo \
    data.train_files="$DATA/train.parquet" data.val_files="$DATA/test.parquet" \
    data.train_batch_size=256 data.max_prompt_length=512 data.max_response_length=512 \
    data.filter_overlong_prompts=true data.truncation=error \
    actor_rollout_ref.model.path="$MODEL" \
    actor_rollout_ref.model.use_remove_padding=true actor_rollout_ref.model.enable_gradient_checkpointing=true \
    actor_rollout_ref.actor.optim.lr=1e-6 \
    actor_rollout_ref.actor.ppo_mini_batch_size=64 actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=16 \
    actor_rollout_ref.actor.use_kl_loss=true actor_rollout_ref.actor.kl_loss_coef=0.001 \
    actor_rollout_ref.actor.kl_loss_type=low_var_kl actor_rollout_ref.actor.entropy_coeff=0 \
    actor_rollout_ref.rollout.name=native actor_rollout_ref.rollout.n=8 \
    actor_rollout_ref.rollout.gpu_memory_utilization=0.5 \
    actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=32 \
    actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu=32 \
    trainer.device=cuda trainer.n_gpus_per_node=1 trainer.nnodes=1 \
    trainer.logger=[console,file] trainer.project_name=verl_grpo_gsm8k trainer.experiment_name=qwen2.5_0.5b \
    trainer.save_freq=20 trainer.test_freq=5 trainer.total_epochs=15 "$@"
