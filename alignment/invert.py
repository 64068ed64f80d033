"""Prompt inversion: given an answer, search for a prompt that makes the model write it.

    align invert [--targets FILE] [--model smollm2] [--steps 50] [--prompt-tokens 10]
                 [--topk 64] [--batch 64] [--soft-steps 100] [--seed 0] [--output runs/invert]

The model's weights stay frozen; only the prompt changes. The prompt is ``--prompt-tokens``
tokens written as the user's turn of the chat template, so the target is scored as the
assistant's reply, the place a user's question would put it. The loss is the mean
negative log-likelihood of the target's tokens given the rendered prompt.

1. **Soft prompt.** K free vectors in embedding space, started at the embeddings of K
   random tokens, are optimised by Adam for ``--soft-steps``. No real prompt reaches
   this loss; it shows how far the continuous relaxation gets.
2. **Projection.** Each vector becomes the real token whose embedding is nearest by
   cosine, the starting point of the discrete search.
3. **Greedy coordinate gradient** (GCG, Zou et al. 2023). The gradient of the loss with
   respect to a one-hot encoding of each prompt position ranks every token as a
   substitute there; ``--batch`` random single-token swaps, each drawn from the ``--topk``
   best of its position, are scored exactly in one forward pass, and the best one replaces
   the prompt when it lowers the loss. The search stops after ``--steps`` or as soon as
   every target token is the model's top choice, which is when greedy decoding writes
   the target.

Only tokens that survive decoding to text and tokenising again are tried (no special
tokens, no half characters), so the found prompt is text a user could paste. Whether it
works is checked the way a user would see it: the prompt text is put through the chat
template again and decoded greedily by ``alignment.engine``, and the new tokens are
compared with the target's.

Writes ``invert.json`` (per target: log-likelihood under the empty prompt and the found
one, the greedy check, the prompt text, the loss per step; overall: reproduction rate with
a Wilson 95% interval and the mean gain) and ``invert.png`` (best loss per step) into
``--output``. Without ``--targets`` the shipped 20 short answers are used
(``alignment/evalsets/inversion_targets.jsonl``, rows ``{id, target}``).
"""

from __future__ import annotations

import argparse
import json
import random
import time
from dataclasses import dataclass
from pathlib import Path

from alignment.errors import ConfigError, DataError

TARGETS = Path(__file__).parent / "evalsets" / "inversion_targets.jsonl"
MAX_TARGET_CHARS = 500  # a longer target is a document, not an answer; the search would crawl
_MARK = "\x00PROMPT\x00"


def read_targets(path: str | Path, limit: int | None = None) -> list[dict]:
    """Rows ``{target[, id]}`` of any file ``align data`` reads, checked before a model loads."""
    from alignment.data import read_rows

    path = Path(path)
    rows = read_rows(path)
    if not rows:
        raise DataError(path, "has no rows; give at least one target")
    out = []
    for i, row in enumerate(rows, 1):
        if "target" not in row or row["target"] is None:
            raise DataError(path, f"is missing (columns here: {sorted(row)}); every row "
                                  "needs the answer to invert", i, "target")
        target = row["target"]
        if not isinstance(target, str):
            raise DataError(path, f"expected text, got {type(target).__name__}", i, "target")
        if not target.strip():
            raise DataError(path, "is empty; remove the row or fill the field", i, "target")
        if len(target) > MAX_TARGET_CHARS:
            raise DataError(path, f"is {len(target)} characters; targets of at most "
                                  f"{MAX_TARGET_CHARS} are searched", i, "target")
        out.append({"id": str(row.get("id") or f"row-{i}"), "target": target})
    return out[:limit] if limit else out


@dataclass(frozen=True)
class Frame:
    """Token ids around the prompt: the template before the user's text, and from the end
    of the user's turn to where the assistant's reply starts."""

    before: list[int]
    after: list[int]


def chat_frame(tokenizer) -> Frame:
    """The chat template rendered around a marker and cut there (a BOS, a default system
    prompt and the turn markers all land in ``before`` or ``after``)."""
    if tokenizer.chat_template is None:
        return Frame(tokenizer("").input_ids, [])
    text = tokenizer.apply_chat_template([{"role": "user", "content": _MARK}], tokenize=False,
                                         add_generation_prompt=True)
    before, after = text.split(_MARK)
    encode = lambda s: tokenizer(s, add_special_tokens=False).input_ids  # noqa: E731
    return Frame(encode(before), encode(after))


def allowed_tokens(tokenizer, vocab_size: int):
    """Boolean mask of tokens a prompt may hold: not special, and decoding to whole text
    that tokenises back to the same single token."""
    import torch

    special = set(tokenizer.all_special_ids) | set(tokenizer.added_tokens_decoder)
    mask = torch.zeros(vocab_size, dtype=torch.bool)
    for i in range(min(vocab_size, len(tokenizer))):
        if i in special:
            continue
        text = tokenizer.decode([i])
        mask[i] = bool(text) and "\ufffd" not in text
    return mask


class Scorer:
    """The loss of one target after a batch of prompts, given as embeddings or token ids."""

    def __init__(self, model, frame: Frame, target_ids: list[int]):
        import torch

        self.model = model
        self.embedding = model.get_input_embeddings().weight  # (vocab, hidden), frozen
        device = self.embedding.device
        ids = lambda xs: torch.tensor(xs, dtype=torch.long, device=device)  # noqa: E731
        with torch.no_grad():
            self.before = self.embedding[ids(frame.before)]
            self.rest = self.embedding[ids(frame.after + target_ids)]
        self.target = ids(target_ids)
        self.n_after = len(frame.after)

    def loss(self, prompt_embeds):
        """(mean NLL of the target per row, whether every target token is the argmax)."""
        import torch

        rows = prompt_embeds.shape[0]
        dtype = self.embedding.dtype
        embeds = torch.cat([self.before.expand(rows, -1, -1), prompt_embeds.to(dtype),
                            self.rest.expand(rows, -1, -1)], dim=1)
        t = len(self.target)
        logits = self.model(inputs_embeds=embeds, use_cache=False,
                            logits_to_keep=t + 1).logits[:, :-1].float()  # predict each target
        nll = torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), self.target.repeat(rows),
            reduction="none").view(rows, t)
        return nll.mean(1), (logits.argmax(-1) == self.target).all(1)

    def loss_of_ids(self, ids):
        import torch

        with torch.no_grad():
            return self.loss(self.embedding[ids])


def soft_prompt(scorer: Scorer, init_ids, steps: int, lr: float) -> tuple[object, list[float]]:
    """Adam on K free vectors; ``lr`` is in units of the embedding matrix's RMS, so one
    setting suits models whose embeddings differ in scale. Returns the best vectors seen
    and the loss at every step."""
    import torch

    scale = scorer.embedding.detach().float().pow(2).mean().sqrt().item()
    soft = scorer.embedding[init_ids].detach().float().clone().requires_grad_(True)
    opt = torch.optim.Adam([soft], lr=lr * scale)
    history, best, best_loss = [], soft.detach().clone(), float("inf")
    for _ in range(steps):
        loss = scorer.loss(soft[None])[0][0]
        history.append(loss.item())
        if history[-1] < best_loss:
            best_loss, best = history[-1], soft.detach().clone()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        final = scorer.loss(soft[None])[0][0].item()
    history.append(final)
    return (soft.detach() if final < best_loss else best), history


def project(soft, embedding, allowed):
    """The allowed token nearest by cosine to each soft vector."""
    import torch

    with torch.no_grad():
        sims = torch.nn.functional.normalize(soft.float(), dim=-1) @ \
            torch.nn.functional.normalize(embedding.float(), dim=-1).T
        sims[:, ~allowed] = -float("inf")
        return sims.argmax(-1)


def token_gradients(scorer: Scorer, ids):
    """d loss / d one-hot(prompt), (K, vocab): a first-order estimate of each swap's effect."""
    import torch

    one_hot = torch.nn.functional.one_hot(ids, scorer.embedding.shape[0]).to(
        scorer.embedding.dtype).requires_grad_(True)
    loss = scorer.loss((one_hot @ scorer.embedding)[None])[0][0]
    (grad,) = torch.autograd.grad(loss, one_hot)
    return grad.float()


def candidates(ids, grad, allowed, topk: int, batch: int, rng, roundtrips):
    """Up to ``batch`` prompts, each ``ids`` with one position swapped for one of the
    ``topk`` tokens the gradient ranks best there; ones whose text does not tokenise back
    to the same ids are dropped."""
    import torch

    grad = grad.masked_fill(~allowed, float("inf"))
    grad[torch.arange(len(ids)), ids] = float("inf")  # a swap must change the token
    top = (-grad).topk(topk, dim=-1).indices  # (K, topk)
    seen, out = {tuple(ids.tolist())}, []
    for _ in range(batch):
        pos = rng.randrange(len(ids))
        new = ids.clone()
        new[pos] = top[pos, rng.randrange(topk)]
        key = tuple(new.tolist())
        if key not in seen and roundtrips(key):
            seen.add(key)
            out.append(new)
    return torch.stack(out) if out else None


def gcg(scorer: Scorer, ids, steps: int, topk: int, batch: int, allowed, rng, roundtrips,
        progress=None) -> tuple[object, list[float], bool]:
    """Greedy coordinate-gradient search from ``ids``: (best prompt, best loss before the
    first step and after each, whether greedy decoding writes the target)."""
    loss, hit = scorer.loss_of_ids(ids[None])
    best, history, done = loss.item(), [loss.item()], bool(hit[0])
    for _ in range(steps):
        if done:
            break
        batch_ids = candidates(ids, token_gradients(scorer, ids), allowed, topk, batch, rng,
                               roundtrips)
        if batch_ids is not None:
            losses, hits = scorer.loss_of_ids(batch_ids)
            i = int(losses.argmin())
            if losses[i].item() < best:  # only a better prompt replaces the current one
                ids, best, done = batch_ids[i], losses[i].item(), bool(hits[i])
        history.append(best)
        if progress is not None:
            progress.update(1)
            progress.set_postfix(loss=f"{best:.3f}")
    return ids, history, done


def target_loglik(model, prefix_ids: list[int], target_ids: list[int]) -> float:
    """Total log-probability of ``target_ids`` after ``prefix_ids``."""
    import torch

    device = next(model.parameters()).device
    ids = torch.tensor([prefix_ids + target_ids], device=device)
    with torch.inference_mode():
        logits = model(input_ids=ids, use_cache=False,
                       logits_to_keep=len(target_ids) + 1).logits[0, :-1].float()
    logp = torch.log_softmax(logits, -1)
    return float(logp[torch.arange(len(target_ids)), torch.tensor(target_ids)].sum())


def greedy_check(model, tokenizer, prompt: str, target_ids: list[int]) -> dict:
    """Decode greedily (``alignment.engine.decode``) from ``prompt`` as a user's turn, the
    template rendered again from the text; how many target tokens come out first."""
    import torch

    from alignment.engine import decode, encode_prompt, end_token_ids

    encoded = encode_prompt(tokenizer, prompt)
    ids = torch.tensor([encoded], device=next(model.parameters()).device)
    new = decode(model, ids, torch.ones_like(ids), max_new_tokens=len(target_ids),
                 eos_ids=end_token_ids(model, tokenizer))[0]
    prefix = next((k for k, (a, b) in enumerate(zip(new, target_ids)) if a != b),
                  min(len(new), len(target_ids)))
    return {"reproduced": prefix == len(target_ids), "matching_prefix_tokens": prefix,
            "greedy_output": tokenizer.decode(new, skip_special_tokens=True),
            "prompt_ids": encoded}


def invert_one(model, tokenizer, frame: Frame, allowed, target: str, *, prompt_tokens: int,
               steps: int, soft_steps: int, soft_lr: float, topk: int, batch: int, seed: int,
               progress=None) -> dict:
    """Every stage for one target, and the figures of the prompt found."""
    import torch

    target_ids = tokenizer(target, add_special_tokens=False).input_ids
    scorer = Scorer(model, frame, target_ids)
    rng = random.Random(seed)
    pool = allowed.nonzero().squeeze(1).tolist()
    init = torch.tensor(rng.sample(pool, prompt_tokens), device=scorer.embedding.device)
    soft, soft_history = soft_prompt(scorer, init, soft_steps, soft_lr)
    projected = project(soft, scorer.embedding, allowed.to(soft.device))

    def roundtrips(ids: tuple[int, ...]) -> bool:
        return tokenizer(tokenizer.decode(list(ids)), add_special_tokens=False).input_ids \
            == list(ids)

    found, history, hit = gcg(scorer, projected, steps, min(topk, len(pool)), batch,
                              allowed.to(soft.device), rng, roundtrips, progress)
    prompt = tokenizer.decode(found.tolist())
    n = len(target_ids)
    from alignment.engine import encode_prompt

    empty_ll = target_loglik(model, encode_prompt(tokenizer, ""), target_ids)
    check = greedy_check(model, tokenizer, prompt, target_ids)
    found_ll = target_loglik(model, check["prompt_ids"], target_ids)
    empty_check = greedy_check(model, tokenizer, "", target_ids)
    return {
        "target": target, "target_tokens": n, "prompt": prompt,
        "prompt_ids": found.tolist(),
        "prompt_text_retokenizes": check.pop("prompt_ids") == frame.before + found.tolist()
        + frame.after,
        "empty_prompt": {"loglik": empty_ll, "loglik_per_token": empty_ll / n,
                         "reproduced": empty_check["reproduced"],
                         "matching_prefix_tokens": empty_check["matching_prefix_tokens"]},
        "initial_prompt": {"prompt": tokenizer.decode(projected.tolist()),
                           "loglik": -history[0] * n, "loglik_per_token": -history[0]},
        "soft_prompt": {"loglik_start": -soft_history[0] * n,
                        "loglik": -min(soft_history) * n,
                        "loglik_per_token": -min(soft_history)},
        "found_prompt": {"loglik": found_ll, "loglik_per_token": found_ll / n, **check},
        "loglik_gain": found_ll - empty_ll,
        "search_hit": hit, "gcg_steps_run": len(history) - 1,
        "gcg_best_loss": history, "soft_loss": soft_history,
    }


def summarise(rows: list[dict]) -> dict:
    from scipy.stats import binomtest

    hits = sum(r["found_prompt"]["reproduced"] for r in rows)
    ci = binomtest(hits, len(rows)).proportion_ci(0.95, method="wilson")
    gains = [r["loglik_gain"] for r in rows]
    return {"n": len(rows), "reproduced": hits, "reproduction_rate": hits / len(rows),
            "ci95": [float(ci.low), float(ci.high)],
            "interval": f"Wilson 95% interval over {len(rows)} targets",
            "empty_prompt_reproduced": sum(r["empty_prompt"]["reproduced"] for r in rows),
            "mean_loglik_gain": sum(gains) / len(gains),
            "mean_loglik_per_token_empty":
                sum(r["empty_prompt"]["loglik_per_token"] for r in rows) / len(rows),
            "mean_loglik_per_token_found":
                sum(r["found_prompt"]["loglik_per_token"] for r in rows) / len(rows)}


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from alignment.data.io import write_file

    fig, ax = plt.subplots(figsize=(7, 4))
    for r in result["targets"]:
        style = "-" if r["found_prompt"]["reproduced"] else ":"
        ax.plot(r["gcg_best_loss"], style, linewidth=1)
    ax.set_xlabel("GCG step (0 = projected soft prompt)")
    ax.set_ylabel("best mean NLL of the target per token")
    ax.set_title(f"prompt inversion: {Path(result['model']).name} "
                 f"(solid: reproduced, dotted: not)", fontsize=9)
    fig.tight_layout()
    write_file(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    plt.close(fig)


def _load(spec: str):
    from alignment.engine import load_for_inference

    model, tokenizer, dtype, why = load_for_inference(spec)
    model.requires_grad_(False)  # frozen: gradients reach the prompt only
    return model, tokenizer, dtype, why


def run(targets: str | None = None, model: str = "smollm2", steps: int = 50,
        prompt_tokens: int = 10, topk: int = 64, batch: int = 64, soft_steps: int = 100,
        soft_lr: float = 0.1, seed: int = 0, limit: int | None = None,
        output: str | Path = "runs/invert") -> dict:
    """Invert every target and write invert.json and invert.png into ``output``."""
    import torch
    from tqdm.auto import tqdm

    from alignment.data.io import write_file

    if min(steps, soft_steps) < 0 or min(prompt_tokens, topk, batch) < 1:
        raise ConfigError("--prompt-tokens, --topk and --batch must be at least 1, --steps "
                          "and --soft-steps at least 0")
    source = Path(targets) if targets is not None else TARGETS
    rows = read_targets(source, limit)  # bad rows stop it before the model loads
    lm, tokenizer, dtype, why = _load(model)
    torch.manual_seed(seed)
    frame = chat_frame(tokenizer)
    allowed = allowed_tokens(tokenizer, lm.get_input_embeddings().weight.shape[0])
    if int(allowed.sum()) < prompt_tokens:
        raise ConfigError(f"the tokenizer has {int(allowed.sum())} usable tokens, fewer than "
                          f"--prompt-tokens {prompt_tokens}")
    results = []
    with tqdm(total=len(rows) * steps, desc="invert", unit="step", disable=None) as bar:
        for k, row in enumerate(rows):
            started = time.perf_counter()
            out = invert_one(lm, tokenizer, frame, allowed, row["target"],
                             prompt_tokens=prompt_tokens, steps=steps, soft_steps=soft_steps,
                             soft_lr=soft_lr, topk=topk, batch=batch, seed=seed + k,
                             progress=bar)
            bar.update(steps - out["gcg_steps_run"])  # a search that stopped early
            results.append({"id": row["id"], **out,
                            "seconds": round(time.perf_counter() - started, 1)})
    result = {"model": model, "targets_file": str(source), "dtype": dtype, "dtype_why": why,
              "settings": {"steps": steps, "prompt_tokens": prompt_tokens, "topk": topk,
                           "batch": batch, "soft_steps": soft_steps, "soft_lr": soft_lr,
                           "seed": seed, "limit": limit},
              "summary": summarise(results), "targets": results}
    out_dir = Path(output)
    write_file(out_dir / "invert.json",
               lambda tmp: tmp.write_text(json.dumps(result, indent=2) + "\n"))
    plot(result, out_dir / "invert.png")
    return result


def format_table(result: dict) -> str:
    s = result["summary"]
    lo, hi = s["ci95"]
    lines = [f"align invert: {result['model']} ({result['dtype']}), {s['n']} targets, "
             f"{result['settings']['prompt_tokens']} prompt tokens, up to "
             f"{result['settings']['steps']} GCG steps",
             f"{'id':<12} {'tokens':>6} {'ll/tok empty':>12} {'ll/tok found':>12} "
             f"{'match':>7}  prompt"]
    for r in result["targets"]:
        f = r["found_prompt"]
        lines.append(f"{r['id']:<12} {r['target_tokens']:>6} "
                     f"{r['empty_prompt']['loglik_per_token']:>12.2f} "
                     f"{f['loglik_per_token']:>12.2f} "
                     f"{f['matching_prefix_tokens']:>3}/{r['target_tokens']:<3}  "
                     f"{json.dumps(r['prompt'])}")
    lines.append(f"reproduced exactly: {s['reproduced']}/{s['n']} = {s['reproduction_rate']:.2f} "
                 f"[{lo:.2f}, {hi:.2f}] (empty prompt: {s['empty_prompt_reproduced']}); "
                 f"mean log-likelihood gain {s['mean_loglik_gain']:+.2f} nats")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="align invert",
                                     description=__doc__.split("\n\n")[0].replace("\n", " "))
    parser.add_argument("--targets", help="rows with a `target` field (.jsonl, .csv, "
                        ".parquet, ...; default: the shipped 20 short answers)")
    parser.add_argument("--model", default="smollm2",
                        help="bundled name, model folder or hub id (default: smollm2)")
    parser.add_argument("--steps", type=int, default=50, help="GCG steps per target at most")
    parser.add_argument("--prompt-tokens", type=int, default=10, help="prompt length K")
    parser.add_argument("--topk", type=int, default=64,
                        help="substitutes per position the gradient proposes")
    parser.add_argument("--batch", type=int, default=64, help="swaps scored per GCG step")
    parser.add_argument("--soft-steps", type=int, default=100,
                        help="Adam steps on the soft prompt before projection")
    parser.add_argument("--soft-lr", type=float, default=0.1,
                        help="soft-prompt learning rate, in units of the embeddings' RMS")
    parser.add_argument("--limit", type=int, help="only the first N targets")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", "-o", default="runs/invert",
                        help="folder for invert.json and invert.png (default: runs/invert)")
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:
        return int(e.code or 0)
    if args.limit is not None and args.limit < 1:
        raise ConfigError("--limit must be at least 1")
    result = run(args.targets, args.model, args.steps, args.prompt_tokens, args.topk,
                 args.batch, args.soft_steps, args.soft_lr, args.seed, args.limit, args.output)
    print(format_table(result))
    print(f"figures: {Path(args.output) / 'invert.json'}, plot: {Path(args.output) / 'invert.png'}")
    return 0
