"""How often the decoder's grounded reply passes the assistant's checks, and how long a reply takes.

Requests are clinc150 validation utterances whose intent the smart-speaker catalogue serves (seeded
sample). Each goes through ``Assistant.assist`` with a fresh session: understanding, recommendation, then
the reply from ``smollm2-135m-instruct`` with the grounded system prompt and one example exchange, kept
to two sentences and checked (``assistant/reply.py: check_reply``); a reply that fails is replaced by the
template. Prints the share of model replies kept, the reasons the others failed, and seconds per reply,
beside the template alone (no decoder: every reply a template, and its time).

    python benchmarks/assistant_replies.py [--n 40] [--seed 0]
"""

from __future__ import annotations

import argparse
import collections
import sys
import time
from pathlib import Path

from _common import SHARED_DATA

ROOT = Path(__file__).resolve().parents[1]
CATALOGUE = ROOT / "examples" / "assistant" / "smart-speaker.toml"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    path = SHARED_DATA / "clinc150" / "val.csv"
    if not path.is_file():
        raise SystemExit(f"{path} is missing: set MEGASENSE_TEST_DATA to the folder that holds the shared data sets")

    import pandas as pd

    from megasense.assistant.assistant import Assistant
    from megasense.assistant.catalogue import load_catalogue

    catalogue = load_catalogue(CATALOGUE)
    frame = pd.read_csv(path)
    mapped = frame[frame["intent"].isin(catalogue.intents)]
    rows = mapped.sample(n=min(args.n, len(mapped)), random_state=args.seed)
    texts = rows["text"].tolist()
    print(f"{len(texts)} clinc150/val requests of intents the catalogue serves", flush=True)

    assistant = Assistant.load(catalogue)
    assistant.assist(texts[0])  # warm-up
    kept, problems, seconds = 0, collections.Counter(), []
    examples = []
    for text in texts:
        start = time.perf_counter()
        result = assistant.assist(text)
        seconds.append(time.perf_counter() - start)
        if result.reply_source == "model":
            kept += 1
            if len(examples) < 5:
                examples.append((text, result.reply))
        else:
            problems[(result.reply_problem or "").split(":")[0]] += 1
    generator, assistant.generator = assistant.generator, None
    start = time.perf_counter()
    for text in texts:
        assistant.assist(text)
    template_s = (time.perf_counter() - start) / len(texts)
    assistant.generator = generator

    print("\nkept model replies (first five):")
    for text, reply in examples:
        print(f"  {text!r} -> {reply!r}")
    print("\nwhy the others fell back to the template:")
    for problem, count in problems.most_common():
        print(f"  {count:3d}  {problem}")
    mean = sum(seconds) / len(seconds)
    print("\n| replies | kept from the model | template | seconds per request |")
    print(f"| decoder + checks | {kept}/{len(texts)} | {len(texts) - kept} | {mean:.2f} |")
    print(f"| template only (baseline) | 0/{len(texts)} | {len(texts)} | {template_s:.2f} |")
    print(f"model replies kept {kept / len(texts):.2f} ({kept}/{len(texts)}); {mean:.2f} s per request "
          f"vs template only {template_s:.2f} s")  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
