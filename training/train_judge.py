"""Train the answer judge: the default model's encoder as a cross-encoder (`rag.embedding.cross_encoder`).

    python training/data.py                  # pairs from CMRC 2018 trial/dev + DRCD dev (held-out slices left out)
    python training/train_judge.py           # 24.6 min (two epochs, 2 threads, 2-core machine); writes rag/answer/judge_files/

Seeded; the questions are split 90/10 into train and validation (by question, never by pair). The
manifest (`judge.json`) records the data's sha256, the seed, the shape, the time and the validation
figures reached: AUC, accuracy at 0.5, and how often a question's best-scored sentence holds its answer.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from tqdm import tqdm  # noqa: E402

from rag.embedding.cross_encoder import CrossEncoder, JudgeShape, candidate_text  # noqa: E402
from rag.embedding.embedder import default_model_folder  # noqa: E402

log = logging.getLogger("training.judge")
PAIRS = ROOT / "training" / "work" / "pairs.jsonl"
OUT = ROOT / "rag" / "answer" / "judge_files"
SEED = 20261207


def read_pairs(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def split(pairs: list[dict], seed: int, share: float = 0.1) -> tuple[list[dict], list[dict]]:
    """Train and validation pairs, split by question."""
    groups = sorted({p["group"] for p in pairs})
    random.Random(seed).shuffle(groups)
    held = set(groups[: int(len(groups) * share)])
    return [p for p in pairs if p["group"] not in held], [p for p in pairs if p["group"] in held]


def batches(pairs: list[dict], size: int, rng: random.Random) -> list[list[dict]]:
    """Batches of pairs of similar length (less padding), in random order."""
    ordered = sorted(pairs, key=lambda p: len(p["question"]) + len(p["sentence"]) + len(p["before"]) + rng.random())
    chunks = [ordered[i : i + size] for i in range(0, len(ordered), size)]
    rng.shuffle(chunks)
    return chunks


def logits(model: CrossEncoder, batch: list[dict]) -> torch.Tensor:
    inputs = model.batch(
        [p["question"] for p in batch], [candidate_text(p["sentence"], p["before"], p["title"]) for p in batch]
    )
    with torch.autocast("cpu", dtype=torch.bfloat16):
        return model(**inputs).float()


def evaluate(model: CrossEncoder, pairs: list[dict]) -> dict[str, float]:
    """AUC, accuracy at 0.5 and the share of questions whose best-scored sentence is a positive."""
    model.eval()
    scores: list[float] = []
    with torch.inference_mode():
        for i in range(0, len(pairs), 64):
            scores.extend(torch.sigmoid(logits(model, pairs[i : i + 64])).tolist())
    labels = np.array([p["label"] for p in pairs])
    probs = np.array(scores)
    pos, neg = probs[labels == 1], probs[labels == 0]
    auc = float((pos[:, None] > neg[None, :]).mean() + 0.5 * (pos[:, None] == neg[None, :]).mean())
    best: dict[str, tuple[float, int]] = {}
    for p, s in zip(pairs, scores, strict=True):
        if p["group"] not in best or s > best[p["group"]][0]:
            best[p["group"]] = (s, p["label"])
    model.train()
    return {
        "auc": round(auc, 4),
        "accuracy": round(float(((probs >= 0.5) == (labels == 1)).mean()), 4),
        "top1_answers": round(float(np.mean([label for _, label in best.values()])), 4),
        "pairs": len(pairs),
        "questions": len(best),
    }


def train(args: argparse.Namespace) -> dict:
    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)
    torch.set_num_threads(args.threads)
    pairs = read_pairs(args.pairs)
    train_pairs, val_pairs = split(pairs, args.seed)
    base, _ = default_model_folder()
    shape = JudgeShape(args.layers, args.trained, args.max_length)
    model = CrossEncoder(base, shape)
    trained = model.trained_parameters()
    for p in model.parameters():
        p.requires_grad_(False)
    for p in trained.values():
        p.requires_grad_(True)
    head = [p for n, p in trained.items() if n.startswith("head.")]
    body = [p for n, p in trained.items() if not n.startswith("head.")]
    optimizer = torch.optim.AdamW(
        [{"params": body, "lr": args.lr}, {"params": head, "lr": args.lr * 10}], weight_decay=0.01
    )
    steps = args.epochs * ((len(train_pairs) + args.batch - 1) // args.batch)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=[args.lr, args.lr * 10], total_steps=steps, pct_start=0.1
    )
    positives = sum(p["label"] for p in train_pairs)
    loss_fn = torch.nn.BCEWithLogitsLoss(pos_weight=torch.tensor((len(train_pairs) - positives) / positives / 2))
    started = time.perf_counter()
    model.train()
    with tqdm(total=steps, desc="training the judge", unit="step") as bar:
        for epoch in range(args.epochs):
            for batch in batches(train_pairs, args.batch, rng):
                loss = loss_fn(logits(model, batch), torch.tensor([float(p["label"]) for p in batch]))
                loss.backward()
                torch.nn.utils.clip_grad_norm_(body + head, 1.0)
                optimizer.step()
                schedule.step()
                optimizer.zero_grad()
                bar.update(1)
                bar.set_postfix(epoch=epoch + 1, loss=f"{loss.item():.3f}")
    minutes = (time.perf_counter() - started) / 60
    figures = evaluate(model, val_pairs)
    log.info("validation %s after %.1f min", figures, minutes)
    manifest = {
        "data": {
            "pairs_sha256": hashlib.sha256(args.pairs.read_bytes()).hexdigest(),
            "sources_sha256": json.loads((args.pairs.parent / "sources.json").read_text(encoding="utf-8"))
            if (args.pairs.parent / "sources.json").exists()
            else {},
            "train_pairs": len(train_pairs),
            "validation_pairs": len(val_pairs),
        },
        "seed": args.seed,
        "epochs": args.epochs,
        "batch": args.batch,
        "lr": args.lr,
        "base": base.name,
        "minutes": round(minutes, 1),
        "threads": args.threads,
        "validation": figures,
    }
    model.save_trained(args.out, manifest)
    return manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=Path, default=PAIRS)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--layers", type=int, default=JudgeShape.layers)
    parser.add_argument("--trained", type=int, default=JudgeShape.trained)
    parser.add_argument("--max-length", type=int, default=JudgeShape.max_length)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    manifest = train(args)
    print(json.dumps(manifest["validation"], ensure_ascii=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
