"""Training a language model from (programmatic or human) feedback: SFT, reward model, PPO and DPO.

    data.py      JSONL readers: prompt/completion, chat messages, preference pairs, HH-RLHF dialogues
    common.py    what the stages share: encoding, padded batches, log-probabilities, batched sampling, run files
    sft.py       supervised fine-tuning (loss on completion tokens only)
    reward.py    reward model: GPT trunk + scalar head, Bradley-Terry loss; `score`
    ppo.py       PPO with a per-token KL penalty against the frozen reference, value head, GAE
    dpo.py       direct preference optimisation against reference log-probabilities computed once
    toytask.py   the programmatic "human" of the demo and bench: its rule, its data, its score
"""
