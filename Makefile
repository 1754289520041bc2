# Two entry points: `make demo` and `make test`. Both create .venv if needed.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
BASE   := $(VENV)/.base-stamp
STAMP  := $(VENV)/.installed-stamp
DEMO   := demo

.PHONY: demo test test-all bench clean

# dlcli and its dependencies: all the demos need.
$(BASE): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# torch==2.13.0 resolves to the local CPU wheel on these machines, never a CUDA build.
	$(BIN)/pip install --quiet --disable-pip-version-check torch==2.13.0
	$(BIN)/pip install --quiet --disable-pip-version-check -e .
	touch $(BASE)

# ... and the test extra (pytest and the packages the tests compare with: about 20 s more to install).
$(STAMP): $(BASE)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $(STAMP)

test: $(STAMP)
	$(BIN)/pytest -q

test-all: $(STAMP)
	$(BIN)/pytest -q -m ''

demo: $(BASE)
	@rm -rf $(DEMO) && mkdir -p $(DEMO)
	@echo "== text pipeline: preprocess -> vocab build -> encode -> decode"
	$(BIN)/dlcli preprocess sample_data/story.txt --normalize d2l --level char -o $(DEMO)/story.tok
	$(BIN)/dlcli vocab build $(DEMO)/story.tok -o $(DEMO)/tokenizer.json --top 8
	$(BIN)/dlcli vocab encode $(DEMO)/story.tok -t $(DEMO)/tokenizer.json -o $(DEMO)/story.ids
	$(BIN)/dlcli vocab decode $(DEMO)/story.ids -t $(DEMO)/tokenizer.json | head -n 3
	@echo "== subword tokenizer (BPE)"
	$(BIN)/dlcli vocab train sample_data/story.txt -m bpe -v 300 -o $(DEMO)/bpe.json
	$(BIN)/dlcli preprocess sample_data/story.txt -t $(DEMO)/bpe.json | head -n 2
	@echo "== a char-level LSTM language model (about 10 s), then a sample from it"
	$(BIN)/dlcli preprocess sample_data/story.txt -l char --whole -o $(DEMO)/story-whole.tok
	$(BIN)/dlcli vocab build $(DEMO)/story-whole.tok -o $(DEMO)/chars.json -q
	$(BIN)/dlcli vocab encode $(DEMO)/story-whole.tok -t $(DEMO)/chars.json -o $(DEMO)/story-whole.ids -q
	$(BIN)/dlcli train-rnn -d $(DEMO)/story-whole.ids -o $(DEMO)/rnn --cell lstm --layers 1 --hidden 128 \
		--seq-len 32 --batch-size 16 --lr 0.005 --max-steps 600 --seed 1
	$(BIN)/dlcli generate $(DEMO)/rnn --prompt "The keeper" -n 120 --temperature 0.6 --seed 1
	@echo "== a small GPT on the same characters (about 10 s), sampled with its key/value cache"
	$(BIN)/dlcli train-transformer -d $(DEMO)/story-whole.ids -o $(DEMO)/gpt --layers 2 --heads 2 --embd 64 \
		--block-size 64 --batch-size 16 --lr 0.003 --max-steps 400 --seed 1 --device cpu
	$(BIN)/dlcli generate $(DEMO)/gpt --prompt "The keeper" -n 120 --temperature 0.6 --seed 1
	@echo "== translation: English -> French numbers in words (about 20 s), greedy and beam search, BLEU"
	$(BIN)/python sample_data/number_words.py 3000 > $(DEMO)/numbers.tsv
	$(BIN)/dlcli train-transformer --task translate -d $(DEMO)/numbers.tsv -o $(DEMO)/numbers --layers 2 --heads 4 \
		--embd 128 --block-size 24 --batch-size 64 --lr 0.003 --max-steps 300 --seed 1 --device cpu \
		--set data.held_out=100 --set data.vocab_size=400 --set optim.warmup_steps=50 --set eval_interval=100
	printf "two hundred and thirty-four\nseventy-one\none thousand nine hundred and ninety-nine\n" \
		| $(BIN)/dlcli translate $(DEMO)/numbers --beam 4
	$(BIN)/dlcli evaluate $(DEMO)/numbers --beam 4
	@echo "== time series: 1-step vs k-step forecasts of the d2l sine series"
	$(BIN)/dlcli train-rnn --task forecast -d sample_data/sine.csv --cell mlp -o $(DEMO)/sine
	@echo "== tabular features"
	$(BIN)/dlcli preprocess sample_data/people.csv --table --categorical nationality --standardize \
		-o $(DEMO)/people.npy --csv $(DEMO)/people.features.csv
	head -n 3 $(DEMO)/people.features.csv
	@echo "== word embeddings: skip-gram on the story's words (a few seconds), then nearest neighbours"
	$(BIN)/dlcli preprocess sample_data/story.txt -n d2l -l word -o $(DEMO)/story-words.tok -q
	$(BIN)/dlcli embed train $(DEMO)/story-words.tok -o $(DEMO)/vec --dim 32 --min-count 2 --sample 0 \
		--epochs 100 --workers 1 --seed 1
	$(BIN)/dlcli embed neighbors $(DEMO)/vec keeper night -k 4
	@echo "== learning from feedback (SFT, reward model, PPO, DPO on a toy task): make rlhf-demo"
	@echo "== NeRF: a procedural scene of coloured primitives, a hash-grid radiance field (about 15 s), an orbit GIF"
	$(BIN)/dlcli nerf synth -o $(DEMO)/scene --size 48 --train 50 --val 1 --test 8 -q
	$(BIN)/dlcli nerf train $(DEMO)/scene -o $(DEMO)/nerf --config configs/nerf-synth-cpu.yaml --max-steps 100 \
		-b 512 --val-interval 200 --device cpu
	$(BIN)/dlcli nerf eval $(DEMO)/nerf -q | head -n 9
	$(BIN)/dlcli nerf render $(DEMO)/nerf -o $(DEMO)/nerf/orbit.gif -n 16 --depth -q
	@echo "animation: $(DEMO)/nerf/orbit.gif (validation renders: $(DEMO)/nerf/val/)"
	@echo "== a GAN on 8 Gaussians in a ring (about 15 s): its samples over the real density, then mode coverage"
	$(BIN)/dlcli gan train ring8 -o $(DEMO)/ring8 --config configs/gan-ring8.yaml --max-steps 2000 --seed 1 --device cpu
	$(BIN)/dlcli gan eval $(DEMO)/ring8 | head -n 9
	@echo "picture: $(DEMO)/ring8/samples.png (training as an animation: $(DEMO)/ring8/training.gif)"

.PHONY: rlhf-demo
RLHF := $(DEMO)/rlhf
rlhf-demo: $(BASE)  ## pretrain -> SFT -> reward model -> PPO and DPO on a toy task whose "human" is a program
	@rm -rf $(RLHF) && mkdir -p $(RLHF)
	@echo "== the toy task: answers that stay on topic and are positive are preferred (dlcli/rlhf/toytask.py)"
	$(BIN)/python sample_data/rlhf_task.py $(RLHF)
	head -n 2 $(RLHF)/sft.jsonl $(RLHF)/prefs.jsonl
	$(BIN)/dlcli preprocess $(RLHF)/corpus.txt -l char --whole -o $(RLHF)/corpus.tok -q
	$(BIN)/dlcli vocab build $(RLHF)/corpus.tok -o $(RLHF)/chars.json -q
	$(BIN)/dlcli vocab encode $(RLHF)/corpus.tok -t $(RLHF)/chars.json -o $(RLHF)/corpus.ids -q
	@echo "== 1. pretraining: a tiny character GPT (train-transformer, 400 steps)"
	OMP_NUM_THREADS=1 $(BIN)/dlcli train-transformer -d $(RLHF)/corpus.ids -o $(RLHF)/base --layers 2 --heads 4 \
		--embd 64 --block-size 48 --batch-size 32 --lr 0.003 --max-steps 400 --seed 1 --device cpu -q
	@echo "== 2. supervised fine-tuning on prompt/completion pairs"
	OMP_NUM_THREADS=1 $(BIN)/dlcli rlhf sft $(RLHF)/base $(RLHF)/sft.jsonl -o $(RLHF)/sft --max-steps 300 --lr 1e-3 \
		--device cpu
	@echo "== 3. a reward model on preference pairs (Bradley-Terry)"
	OMP_NUM_THREADS=1 $(BIN)/dlcli rlhf reward $(RLHF)/base $(RLHF)/prefs.jsonl -o $(RLHF)/rm --max-steps 300 \
		--lr 1e-3 --device cpu
	@echo "== 4a. PPO against the reward model, KL penalty to the SFT model (reward.png, kl.png)"
	OMP_NUM_THREADS=1 $(BIN)/dlcli rlhf ppo $(RLHF)/sft $(RLHF)/rm --prompts $(RLHF)/prompts.jsonl -o $(RLHF)/ppo \
		--max-steps 60 --device cpu
	@echo "== 4b. DPO straight from the preference pairs (plus the chosen answers' NLL: --rpo-alpha 1)"
	OMP_NUM_THREADS=1 $(BIN)/dlcli rlhf dpo $(RLHF)/sft $(RLHF)/prefs.jsonl -o $(RLHF)/dpo --max-steps 200 \
		--rpo-alpha 1 --device cpu
	@echo "== before (SFT) and after (PPO, DPO), a prompt wording never trained on; the rule scores them:"
	@for run in sft ppo dpo; do echo "-- $$run"; OMP_NUM_THREADS=1 $(BIN)/dlcli generate $(RLHF)/$$run \
		--prompt "what about tea:" -n 18 --num-samples 16 --seed 3 | grep "^what about tea:" | \
		$(BIN)/python -c "import sys; from dlcli.rlhf.toytask import score; s = [l.rstrip() for l in sys.stdin]; \
		[print(f'{score(l[:15], l[15:]):.1f}  {l}') for l in s[:4]]; \
		print(f'mean score of {len(s)} samples: {sum(score(l[:15], l[15:]) for l in s) / len(s):.2f}')"; done

bench: $(STAMP)  ## text pipeline bench (about a minute)
	$(BIN)/python bench/text_pipeline.py

clean:
	rm -rf $(VENV) $(DEMO) .pytest_cache
