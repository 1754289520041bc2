# An example pipeline: make -f docs/pipeline.mk DATA=../shared/data
# Each step is a file target, so make reruns only what changed.
DATA  ?= ../shared/data
OUT   ?= build
DLCLI ?= dlcli

all: $(OUT)/tm.ids

$(OUT):
	mkdir -p $@

$(OUT)/tm.tok: $(DATA)/timemachine.txt | $(OUT)
	$(DLCLI) preprocess $< --normalize d2l --level char -o $@ --force

$(OUT)/tokenizer.json: $(OUT)/tm.tok
	$(DLCLI) vocab build $< -o $@ --force

$(OUT)/tm.ids: $(OUT)/tm.tok $(OUT)/tokenizer.json
	$(DLCLI) vocab encode $< -t $(OUT)/tokenizer.json -o $@ --force

clean:
	rm -rf $(OUT)

.PHONY: all clean
