# An example pipeline: make -f docs/pipeline.mk DATA=../shared/data
# Each step is a file target, so make reruns only what changed: edit the text and everything after it
# is redone; run it again and nothing is.
DATA  ?= ../shared/data
OUT   ?= build
DLCLI ?= dlcli
STEPS ?= 1000

all: $(OUT)/sample.txt

$(OUT):
	mkdir -p $@

$(OUT)/tm.tok: $(DATA)/timemachine.txt | $(OUT)
	$(DLCLI) preprocess $< --normalize d2l --level char -o $@ --force

$(OUT)/tokenizer.json: $(OUT)/tm.tok
	$(DLCLI) vocab build $< -o $@ --force -q

$(OUT)/tm.ids: $(OUT)/tm.tok $(OUT)/tokenizer.json
	$(DLCLI) vocab encode $< -t $(OUT)/tokenizer.json -o $@ --force

# A run directory is a folder; its weights, written last, stand for it.
$(OUT)/lstm/model.safetensors: $(OUT)/tm.ids
	$(DLCLI) train-rnn -d $< -o $(OUT)/lstm --cell lstm --max-steps $(STEPS) --force -q

$(OUT)/sample.txt: $(OUT)/lstm/model.safetensors
	$(DLCLI) generate $(OUT)/lstm --prompt "the time traveller " -n 200 --seed 1 > $@.tmp && mv $@.tmp $@

clean:
	rm -rf $(OUT)

.PHONY: all clean
