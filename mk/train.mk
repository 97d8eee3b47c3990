# Training the handwriting model (issue 3). `make train` reproduces models/handwriting.onnx;
# `make eval` measures it on the held-out sets, `make eval-real` on the real crops. Training
# needs fonts from Debian's packages and hanzi-writer-data from npm; the generated data stays in training/work/ (not committed).
FONTS := fonts-arphic-ukai fonts-arphic-uming fonts-arphic-bkai00mp fonts-arphic-bsmi00lp \
	fonts-cns11643-kai fonts-cns11643-sung fonts-cwtex-ming fonts-cwtex-fs fonts-cwtex-heib \
	fonts-cwtex-yen fonts-noto-cjk fonts-wqy-zenhei fonts-cwtex-kai
WORK := training/work
STROKE_DATA := $(WORK)/hanzi-writer-data/package/index.js
TRAIN_STAMP := $(VENV)/.train-installed

.PHONY: train eval eval-real train-data finetune

$(TRAIN_STAMP): $(STAMP)
	$(BIN)/pip install --quiet -e '.[train]'
	touch $(TRAIN_STAMP)

$(WORK)/.fonts:
	mkdir -p $(WORK)
	dpkg -s $(FONTS) >/dev/null 2>&1 || (apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(FONTS))
	touch $@

$(STROKE_DATA):
	mkdir -p $(WORK)/hanzi-writer-data
	cd $(WORK)/hanzi-writer-data && npm pack --silent hanzi-writer-data@2.0.1 && \
		tar xzf hanzi-writer-data-2.0.1.tgz

$(WORK)/train.npz: $(TRAIN_STAMP) $(WORK)/.fonts $(STROKE_DATA)
	$(BIN)/python -m training.dataset --out $(WORK) --per-source 4

train-data: $(WORK)/train.npz

train: $(WORK)/train.npz
	$(BIN)/python -m training.train --epochs 10
	$(BIN)/python -m training.calibrate

$(WORK)/eval_font.npz: $(TRAIN_STAMP) $(WORK)/.fonts $(STROKE_DATA)
	$(BIN)/python -m training.dataset --out $(WORK) --eval-only

eval: $(WORK)/eval_font.npz
	$(BIN)/python -m training.evaluate

# The labelled real crops of ../shared/real-dev (or $$REAL_DEV): accuracy on all and on the
# unflagged ones, per source folder, and a sheet of the errors (training/work/real_errors.png).
eval-real: $(STAMP)
	$(BIN)/python -m training.evaluate_real $(EVAL_REAL_ARGS)

# Issue 9: fine-tune the shipped model on form crops like the real scans, then on the real
# crops (a fixed 2-fold split: each fold model is measured on the fold it never saw), and
# ship a model trained as the folds were on every labelled crop. See docs/model.md.
FT := $(BIN)/python -m training.finetune
$(WORK)/papers.npz: $(STAMP)
	$(BIN)/python -m training.paper

$(WORK)/form_train.npz: $(TRAIN_STAMP) $(WORK)/.fonts $(STROKE_DATA) $(WORK)/papers.npz
	$(BIN)/python -m training.dataset --out $(WORK) --form --workers 4 --pens 8 --prints 2 --nulls 400 --replay 5000 --more 16

finetune: $(WORK)/form_train.npz $(WORK)/eval_font.npz
	$(FT) --init models/handwriting.onnx --data form_train.npz replay.npz --epochs 3 \
		--out $(WORK)/generated.onnx
	$(FT) --init $(WORK)/generated.onnx --data form_more.npz form_train.npz replay.npz \
		--epochs 1 --lr 7e-4 --out $(WORK)/generated2.onnx
	$(BIN)/python -m training.calibrate --model $(WORK)/generated2.onnx
	for k in 0 1; do \
		other=$$((1 - k)); \
		$(BIN)/python -m training.pseudo --model $(WORK)/generated2.onnx --check $$other \
			--out $(WORK)/pseudo2_$${k}.json && \
		$(FT) --init $(WORK)/generated2.onnx --real-fold $$k --pseudo $(WORK)/pseudo2_$${k}.json \
			--data form_more.npz replay.npz --sample 8000 --epochs 1 --out $(WORK)/fold2_$${k}.onnx && \
		$(BIN)/python -m training.calibrate --model $(WORK)/fold2_$${k}.onnx --shift-on $$other \
			--shift-reference $(WORK)/generated2.onnx && \
		$(BIN)/python -m training.evaluate_real --model $(WORK)/fold2_$${k}.onnx --fold $$k \
			--sheet $(WORK)/fold2_$${k}_errors.png --rows $(WORK)/fold2_$${k}_rows.json || exit 1; \
	done
	$(BIN)/python -m training.pseudo --model $(WORK)/generated2.onnx --check all \
		--out $(WORK)/pseudo2_all.json
	$(FT) --init $(WORK)/generated2.onnx --real-fold all --pseudo $(WORK)/pseudo2_all.json \
		--data form_more.npz replay.npz --sample 8000 --epochs 1 --out models/handwriting.onnx
	$(BIN)/python -m training.calibrate --model models/handwriting.onnx --shift-on all \
		--shift-reference $(WORK)/generated2.onnx
