"""Hugging Face checkpoints in and out: `dlcli import-hf` (a model folder -> a dlcli GPT run) and
`dlcli export-hf` (a GPT run -> a folder `transformers` loads). GPT-2 and the Llama family."""
