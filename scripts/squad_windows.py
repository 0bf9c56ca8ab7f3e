"""How many training windows this interpreter's stack cuts from the offline SQuAD split.

A SQuAD run's training data is its windows: the same questions cut into a different number of windows
train a different run under the same run id. Run this under any Python / transformers / tokenizers to
compare stacks (the minilm profile's windows: 192 tokens, stride 64):

    MOVPRUNE_DATA_DIR=../shared/data python scripts/squad_windows.py [--max-length 192 --stride 64]
"""
import argparse
import platform
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--max-length", type=int, default=192)
    p.add_argument("--stride", type=int, default=64)
    p.add_argument("--model", default="minilm", help="model whose tokenizer cuts the windows")
    a = p.parse_args(argv)
    import tokenizers
    import transformers

    from movprune import models, squad
    from movprune.provenance import train_fingerprint

    examples = squad.load_squad(None, split="train")
    features = squad.prepare_train_features(examples, models.load_tokenizer(a.model), a.max_length, a.stride)
    print(f"python {platform.python_version()}, transformers {transformers.__version__}, tokenizers "
          f"{tokenizers.__version__}: {len(examples)} questions -> {len(features)} windows "
          f"({a.max_length} tokens, stride {a.stride}), fingerprint {train_fingerprint(features)['sha1']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
