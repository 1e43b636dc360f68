"""The smaller-than-tiny setting the pipeline's end-to-end tests run: every stage real, each tiny.

A ~0.2M-parameter model, two stdlib shards, a few optimizer steps per stage and a handful of
evaluation problems, so the whole DAG runs through kfp.local in a few minutes on 2 cores.
"""

MICRO_OVERRIDES = [
    "model.hidden_size=64", "model.num_hidden_layers=2", "model.num_attention_heads=2",
    "model.num_key_value_heads=1", "model.intermediate_size=128", "model.max_position_embeddings=256",
    "data.shard_docs=25", "data.pack.rows_per_shard=64",
    "data.tiny_tasks.n_train=120", "data.tiny_tasks.n_heldout=12",
    "pretrain.max_steps=3", "pretrain.micro_batch_size=4", "pretrain.seq_len=128", "pretrain.warmup_steps=1",
    "pretrain.anneal_steps=2", "pretrain.save_every_steps=2", "pretrain.log_every_steps=1",
    "midtrain.max_steps=2", "midtrain.micro_batch_size=4", "midtrain.seq_len=128", "midtrain.warmup_steps=1",
    "midtrain.save_every_steps=2", "midtrain.log_every_steps=1",
    "instruct.max_steps=2", "instruct.micro_batch_size=4", "instruct.seq_len=256", "instruct.save_every_steps=2",
    "instruct.log_every_steps=1",
    "grpo.max_steps=2", "grpo.micro_batch_size=2", "grpo.grad_accum_steps=1", "grpo.num_generations=2",
    "grpo.num_iterations=1", "grpo.save_every_steps=2", "grpo.log_every_steps=1", "grpo.ref_sync_steps=2",
    "grpo.rollout.max_completion_length=16", "grpo.rollout.steps=16", "grpo.rollout.max_prompt_length=64",
    "decoding.max_new_tokens=16", "decoding.steps=16", "decoding.fast.block_length=8",
    "evaluation.max_problems=3", "evaluation.gen_length=16", "evaluation.speeds=[1x]",
    "evaluation.benchmarks=[tiny_heldout,humaneval]", "evaluation.batch_size=4",
]
MICRO_PARAMS = {"stdlib_max_files": 40, "tokenizer_vocab_size": 400}
