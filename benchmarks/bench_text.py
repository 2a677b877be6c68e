"""Text encoder and text check timings: prints figures, asserts nothing.

    PYTHONPATH=src .venv/bin/python benchmarks/bench_text.py [--threads 1 2] [--runs 5]

For each thread count, a fresh process measures
1. cold start: `import torch`, then `TextEncoder()` (imports transformers and tokenizers, reads the tokenizer,
   builds BERT, reads 91 MB of weights), then the first `encode` -- what `sie3d generate` pays once;
2. throughput: sentences/s encoding 512 short expression prompts (about 10 word pieces each) and 128 long
   texts cut to the 128-piece window, in batches of `EncoderConfig.batch_size`;
3. latency of one prompt (`encode([prompt])`), the median of `--runs` x 20 calls;
4. `check_text`: the first call (loads the English word list, and the foreign lists and the language detector
   when a word is not English) and the per-prompt time after that.
Figures are medians over `--runs` repetitions; the machine may be shared, so expect noise.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

PROMPTS = [
    "a gleeful grin with raised eyebrows", "wink", "a tired old man smiling faintly", "open mouth", "pout",
    "happy and sad", "jaw dropped in disbelief", "a soft, shy smile", "furious, teeth clenched", "deep in thought",
    "sceptical look with one eyebrow up", "crying with joy", "bored out of her mind", "smirk", "disgusted sneer",
    "terrified, eyes wide open",
]  # fmt: skip
LONG = ("a warm smile spreads slowly across her face while her eyes crinkle with delight and her cheeks lift, "
        "the corners of her mouth pulling up and back as if she had just heard the best news of the year ") * 5


def worker(threads: int, runs: int) -> dict:
    start = time.perf_counter()
    import torch

    torch.set_num_threads(threads)
    t_torch = time.perf_counter()
    from sie3d.semantics.encoder import TextEncoder

    encoder = TextEncoder()
    t_load = time.perf_counter()
    encoder.encode([PROMPTS[0]])
    t_first = time.perf_counter()

    short = [PROMPTS[i % len(PROMPTS)] for i in range(512)]
    long = [LONG] * 128
    rates_short, rates_long, latency = [], [], []
    for _ in range(runs):
        t = time.perf_counter()
        encoder.encode(short)
        rates_short.append(len(short) / (time.perf_counter() - t))
        t = time.perf_counter()
        encoder.encode(long)
        rates_long.append(len(long) / (time.perf_counter() - t))
        for prompt in PROMPTS[:20]:
            t = time.perf_counter()
            encoder.encode([prompt])
            latency.append(time.perf_counter() - t)

    from sie3d.semantics.text import check_text

    t = time.perf_counter()
    check_text(PROMPTS[0], encoder_tokens=encoder.count_tokens)
    t_check_first = time.perf_counter() - t
    t = time.perf_counter()
    check_text("un sourire joyeux", encoder_tokens=encoder.count_tokens)  # loads the foreign lists + detector
    t_check_foreign = time.perf_counter() - t
    t = time.perf_counter()
    for prompt in PROMPTS:
        check_text(prompt, encoder_tokens=encoder.count_tokens)
    t_check = (time.perf_counter() - t) / len(PROMPTS)
    return {
        "threads": threads,
        "import_torch_s": t_torch - start,
        "load_s": t_load - t_torch,
        "first_encode_s": t_first - t_load,
        "cold_total_s": t_first - start,
        "short_per_s": statistics.median(rates_short),
        "long_per_s": statistics.median(rates_long),
        "one_prompt_ms": 1000 * statistics.median(latency),
        "check_first_s": t_check_first,
        "check_foreign_first_s": t_check_foreign,
        "check_ms": 1000 * t_check,
        "tokens_long": encoder.count_tokens(LONG),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.threads[0], args.runs)))
        return
    rows = []
    for threads in args.threads:  # one fresh process each: the cold start is really cold (bar the OS file cache)
        cmd = [sys.executable, __file__, "--worker", "--threads", str(threads), "--runs", str(args.runs)]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
        rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"long text: {rows[0]['tokens_long']} word pieces, cut to 128; load average (1, 5, 15 min): {load} "
          f"on {os.cpu_count()} cores\n")
    print("| threads | import torch | TextEncoder() | first encode | cold total | short prompts/s | 128-piece texts/s "
          "| one prompt | check_text first | + foreign lists | check_text |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['threads']} | {r['import_torch_s']:.2f} s | {r['load_s']:.2f} s | {r['first_encode_s']:.3f} s "
              f"| {r['cold_total_s']:.2f} s | {r['short_per_s']:.0f} | {r['long_per_s']:.1f} "
              f"| {r['one_prompt_ms']:.1f} ms | {r['check_first_s']:.2f} s | {r['check_foreign_first_s']:.2f} s "
              f"| {r['check_ms']:.2f} ms |")


if __name__ == "__main__":
    main()
