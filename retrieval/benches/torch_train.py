"""The training bench's YouTube network in PyTorch: the peer that `cargo bench -p retrieval
--bench train` is compared with, on the same machine (CPU) or the same GPU (CUDA).

The same model and step as the Rust bench (retrieval/benches/train.rs, model=youtube_dnn):
1M items, 50-watch histories drawn with density falling like 1/sqrt(item), each item with
tokens [i % 50, 50 + i % 7]; the user vector is a ReLU tower (one layer of 256, dropout 0.5
before each layer) over [history mean of the 64-wide item embeddings (history dropout 0.2),
mean of the last 5, mean of the history's 16-wide token embeddings, example age]; the loss is
the sampled softmax over [v_j | b_j] rows (1M x 65) with 2,048 shared negatives drawn from
(count + 1)^0.75, the logQ correction and accidental hits masked; the embedding tables take
lazy (row-sparse) Adam (torch.optim.SparseAdam, as recpipe's row-sparse AdamW with weight decay
0), the tower AdamW.

    python retrieval/benches/torch_train.py [--device cuda] [--batch-size 512] [--steps 40]
        [--items 1000000] [--threads N]

Prints one JSON line: device, batch size, steps timed, examples/s and the last loss. The first
`--warmup` steps (default 5) are not timed.
"""

import argparse
import json
import time

import torch
import torch.nn.functional as F

HISTORY = 50
RECENT = 5
DIM = 64
TOKEN_DIM = 16
HIDDEN = 256
NEGATIVES = 2048
POWER = 0.75
DROPOUT = 0.5
HISTORY_DROPOUT = 0.2
LR = 4e-3
INIT_STD = 0.05
TOKENS = 57


def skewed_items(n, items, generator, device):
    """Item ids with density falling like 1/sqrt(item), as the Rust bench draws them."""
    u = torch.rand(n, generator=generator, device=device)
    return (u * u * items).long().clamp_(max=items - 1)


class YoutubeNetwork(torch.nn.Module):
    def __init__(self, items):
        super().__init__()
        self.items = torch.nn.Embedding(items, DIM, sparse=True)
        self.tokens = torch.nn.Embedding(TOKENS, TOKEN_DIM, sparse=True)
        self.softmax = torch.nn.Embedding(items, DIM + 1, sparse=True)
        for table in (self.items, self.tokens, self.softmax):
            torch.nn.init.normal_(table.weight, std=INIT_STD)
        with torch.no_grad():
            self.softmax.weight[:, DIM] = 0.0
        self.hidden = torch.nn.Linear(DIM + DIM + TOKEN_DIM + 1, HIDDEN)
        self.output = torch.nn.Linear(HIDDEN, DIM)

    def user_vectors(self, history, keep, age):
        """history: [B, 50] item ids, keep: [B, 50] history-dropout mask, age: [B, 1]."""
        b = history.shape[0]
        weights = keep / keep.sum(1, keepdim=True).clamp(min=1.0)
        mean = (self.items(history) * weights.unsqueeze(2)).sum(1)
        recent = self.items(history[:, -RECENT:]).mean(1)
        # Each item's two tokens share its weight.
        tokens = torch.stack([history % 50, 50 + history % 7], dim=2).reshape(b, -1)
        token_weights = (weights / 2).repeat_interleave(2, dim=1)
        token_mean = (self.tokens(tokens) * token_weights.unsqueeze(2)).sum(1)
        x = torch.cat([mean, recent, token_mean, age], dim=1)
        x = F.relu(self.hidden(F.dropout(x, DROPOUT, self.training)))
        return self.output(F.dropout(x, DROPOUT, self.training))

    def loss(self, u, targets, negatives, log_q):
        u1 = torch.cat([u, torch.ones_like(u[:, :1])], dim=1)
        true = (u1 * self.softmax(targets)).sum(1, keepdim=True)
        sampled = u1 @ self.softmax(negatives).t() - log_q
        sampled = sampled.masked_fill(targets.unsqueeze(1) == negatives.unsqueeze(0), float("-inf"))
        logits = torch.cat([true, sampled], dim=1)
        zeros = torch.zeros(u.shape[0], dtype=torch.long, device=u.device)
        return F.cross_entropy(logits, zeros)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--items", type=int, default=1_000_000)
    p.add_argument("--threads", type=int, default=0)
    a = p.parse_args()
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    device = torch.device(a.device)
    g = torch.Generator(device=device).manual_seed(1)
    torch.manual_seed(1)

    # Negative sampling weights from the training counts of a bench-sized log.
    watches = (a.warmup + a.steps) * a.batch_size // 10 * (HISTORY + 10)
    counts = torch.bincount(skewed_items(watches, a.items, g, device), minlength=a.items)
    weights = (counts.double() + 1.0) ** POWER
    q = weights / weights.sum()

    model = YoutubeNetwork(a.items).to(device)
    sparse = [model.items.weight, model.tokens.weight, model.softmax.weight]
    dense = [p for n, p in model.named_parameters() if not any(p is s for s in sparse)]
    optimizers = [
        torch.optim.SparseAdam(sparse, lr=LR),
        torch.optim.AdamW(dense, lr=LR, weight_decay=0.0),
    ]
    model.train()

    def step():
        b = a.batch_size
        history = skewed_items(b * HISTORY, a.items, g, device).view(b, HISTORY)
        targets = skewed_items(b, a.items, g, device)
        keep = (torch.rand(b, HISTORY, generator=g, device=device) >= HISTORY_DROPOUT).float()
        age = torch.rand(b, 1, generator=g, device=device)
        negatives = torch.multinomial(q, NEGATIVES, replacement=True, generator=g)
        log_q = torch.log(NEGATIVES * q[negatives]).float().unsqueeze(0)
        for o in optimizers:
            o.zero_grad(set_to_none=True)
        loss = model.loss(model.user_vectors(history, keep, age), targets, negatives, log_q)
        loss.backward()
        for o in optimizers:
            o.step()
        return loss

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    for _ in range(a.warmup):
        step()
    sync()
    start = time.perf_counter()
    for _ in range(a.steps):
        loss = step()
    sync()
    seconds = time.perf_counter() - start
    print(
        json.dumps(
            {
                "peer": f"pytorch {torch.__version__}",
                "device": str(device),
                "threads": torch.get_num_threads(),
                "items": a.items,
                "batch_size": a.batch_size,
                "steps": a.steps,
                "examples_per_second": round(a.steps * a.batch_size / seconds, 1),
                "loss": round(loss.item(), 3),
            }
        )
    )


if __name__ == "__main__":
    main()
