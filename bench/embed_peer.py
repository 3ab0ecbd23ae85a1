#!/usr/bin/env python3
"""Embedding throughput of sentence-transformers (PyTorch, CPU) on a file of texts, one per line: the peer of
`rvdb bench embed`. Same model files, same batch size (32), texts/s over the whole file after one warm-up batch.

    python3 -m venv /tmp/stenv && /tmp/stenv/bin/pip install sentence-transformers torch
    python3 bench/corpus.py --count 10000 > /tmp/sentences.txt
    /tmp/stenv/bin/python bench/embed_peer.py --texts /tmp/sentences.txt --threads 1
    /tmp/stenv/bin/python bench/embed_peer.py --texts /tmp/sentences.txt --threads 2"""
import argparse
import json
import os
import time

import torch
from sentence_transformers import SentenceTransformer


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--texts", required=True)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--model", default=os.path.expanduser("~/.cache/rvdb/models/all-MiniLM-L6-v2"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    texts = [l.rstrip("\n") for l in open(args.texts, encoding="utf-8") if l.strip()]
    model = SentenceTransformer(args.model, device="cpu")
    model.encode(texts[:32], batch_size=32)
    start = time.perf_counter()
    model.encode(texts, batch_size=32, convert_to_numpy=True)
    secs = time.perf_counter() - start
    print(json.dumps({"engine": f"sentence-transformers {__import__('sentence_transformers').__version__} "
                                f"(torch {torch.__version__})", "threads": args.threads, "texts": len(texts),
                      "seconds": round(secs, 3), "texts_per_s": round(len(texts) / secs, 1)}))


if __name__ == "__main__":
    main()
