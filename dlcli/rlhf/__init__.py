"""Training a language model from (programmatic or human) feedback: SFT, reward model, PPO and DPO.

    data.py       JSONL readers: prompt/completion, chat messages, preference pairs, HH-RLHF dialogues
    tokens.py     text to ids checked against the vocabulary and context, the end token, padded batches, masks
    policy.py     a GPT policy's per-token log-probabilities, its hidden states, batched sampling
    config.py     StageConfig: the keys every stage has
    runs.py       the runs a stage reads and the one it writes (device, precision, language-model files)
    loop.py       training on examples (SFT, reward, DPO): held-out split, minibatches on train/loop.fit
    sft.py        supervised fine-tuning (loss on completion tokens only)
    reward.py     reward model: GPT trunk + scalar head, Bradley-Terry loss; `score`
    advantage.py  GAE and whitening over response tokens (statistics over every process under torchrun)
    ppo.py        PPO with a per-token KL penalty against the frozen reference, value head; one step on
                  train/loop.fit is a rollout and its PPO epochs
    dpo.py        direct preference optimisation against reference log-probabilities computed once
    toytask.py    the programmatic "human" of the demo and bench: its rule, its data, its score
"""
