# SPDX-License-Identifier: Apache-2.0
"""ListOps at Long Range Arena settings: the LightTransformer's attention family, trained -> JSON.

The data is the LRA ListOps distribution from our own generator
(:func:`sw.data.listops_lra_generate`: 500 < length < 2000 tokens, depth <= 10, 2..10 arguments,
MAX/MIN/MED/SUM_MOD; 96,000 / 2,000 / 2,000 samples). Model size and training budget are LRA's
ListOps settings, read from google-research/long-range-arena at commit ad0ff01
(``lra_benchmarks/listops/configs/base_listops_config.py``, ``lra_benchmarks/listops/train.py``,
``lra_benchmarks/utils/train_utils.py``): 6 layers, d_model 512, 8 heads, MLP 2048, dropout 0.1,
batch 32, 5000 steps, Adam(0.9, 0.98, eps 1e-9) with decoupled weight decay 0.1,
lr = 0.05 * min(1, step / 1000) / sqrt(max(step, 1000)), inputs cut at 2000 tokens.

Differences from LRA, on purpose: the model is this project's :class:`sw.model.LightTransformer`
(pre-LN, learned positions, its own attention modules; LRA: sinusoidal positions, CLS pooling).
The classifier mean-pools the final features over the real tokens (the LightTransformer's own
pooling, masked because batches carry padding; the attention modules have no padding mask, so
batches are bucketed by length and cut to a multiple of 64 tokens, which keeps padding under 64
tokens a row). ``--classifier cls --positions sinusoidal --pad-mask`` put LRA's classifier in
instead (CLS token and MLP head, fixed positions, padding keys masked in softmax attention).
``full``/``window``/``random_sparse`` run the attention module's own dense
forward by default; ``--softmax-impl sdpa`` swaps in
``torch.nn.functional.scaled_dot_product_attention`` (same weights, same function; checked
against the module at start-up), which fits nine runs on one GPU, but on the H200 every run on
that path ended in non-finite losses (docs/lra.md). Gradients are clipped to norm 1.0
(``--clip-norm``; LRA does not clip) and an update with a non-finite loss is skipped. The
checkpoint with the best validation accuracy (all 2,000 samples, every ``--eval-every`` steps)
is evaluated once on test.

    python bench/lra_listops.py --smoke                       # seconds, CPU: checks the script
    python bench/lra_listops.py --variants full --device cuda --data-cache build/lra/data.npz \\
        --json build/lra/lra_full.json
    python bench/lra_listops.py --time-only --device cuda --json build/lra/lra_timing.json
    python bench/results_table.py --lra docs/lra/* --plot docs/lra_listops.png \
        --out docs/results.md
"""

from __future__ import annotations

import argparse
import datetime
import math
import os
import platform
import sys
import time
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from sw.report import STDOUT, UsageError, check_output_path, json_path_type, write_json  # noqa: E402

#: LRA ListOps training settings (sources in the module docstring).
PAPER = dict(batch=32, steps=5000, lr=0.05, warmup=1000, weight_decay=0.1, betas=(0.9, 0.98),
             eps=1e-9, d_model=512, n_heads=8, n_layers=6, d_ff=2048, dropout=0.1, seq_len=2000)
SOURCE = ("google-research/long-range-arena@ad0ff01a5b3492ade621553a1caae383b347e0c1: "
          "lra_benchmarks/listops/configs/base_listops_config.py (batch_size 32, "
          "num_train_steps 5000, learning_rate 0.05, warmup 1000, weight_decay 0.1, emb_dim 512, "
          "num_heads 8, num_layers 6, qkv_dim 512, mlp_dim 2048, max_length 2000, pooling CLS), "
          "lra_benchmarks/listops/train.py (Adam beta1 0.9, beta2 0.98, eps 1e-9; schedule "
          "constant * linear_warmup * rsqrt_decay), lra_benchmarks/data/listops.py (data)")
#: The variants and their knobs at T = 2000 (our choices; LRA's per-model configs only name the
#: model type).
VARIANTS = {
    "full": dict(attention="full"),
    "window": dict(attention="window", window=256),
    "random_sparse": dict(attention="random_sparse", window=64, n_random=64),
    "linformer": dict(attention="linformer", proj_len=256),
    "performer": dict(attention="performer", n_features=256),
    "nystrom": dict(attention="nystrom", n_landmarks=128),
    "lsh": dict(attention="lsh", lsh_buckets=8, lsh_rounds=2),
    "conv": dict(attention="conv", conv_kernel=31),
    "dynamic_window": dict(attention="dynamic_window", window=256),
}
#: Variants whose reference code keeps (B, H, T, T)-sized tensors for backward: recompute each
#: block in backward (activation checkpointing), and split dynamic_window's batch of 32.
CHECKPOINTED = ("lsh", "dynamic_window")
MICRO_BATCH = {"dynamic_window": 8}
SMOKE = dict(n_train=48, n_eval=16, seq_len=128, d_model=32, n_heads=2, n_layers=2, d_ff=64,
             steps=3, eval_every=2, batch=8, warmup=2)
SMOKE_KNOBS = dict(window=16, n_random=4, proj_len=16, n_features=16, n_landmarks=8,
                   lsh_buckets=4, conv_kernel=5)
PAD_MULTIPLE = 64


def _csv_variants(text: str) -> list[str]:
    names = [v.strip() for v in text.split(",") if v.strip()]
    bad = [v for v in names if v not in VARIANTS]
    if not names or bad:
        raise argparse.ArgumentTypeError(f"variants must be a comma-separated subset of "
                                         f"{','.join(VARIANTS)}, not {text!r}")
    return names


def _positive(kind):
    def parse(text: str):
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"must be a positive {kind.__name__}, not {text!r}") from None
        if not v > 0:
            raise argparse.ArgumentTypeError(f"must be a positive {kind.__name__}, not {text!r}")
        return v
    return parse


def _commit() -> str:
    from sw.report import source_commit

    return source_commit() or os.environ.get("LIGHTFORMER_COMMIT", "?")


def _meta(args, torch) -> dict:
    dev = str(args.device)
    name = torch.cuda.get_device_name(0) if dev.startswith("cuda") else platform.processor()
    return dict(utc=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                host=platform.node(), device=dev, device_name=name or platform.machine(),
                cpu_count=os.cpu_count(), torch=torch.__version__, commit=_commit(),
                python=platform.python_version(),
                command="lra_listops.py " + " ".join(
                    f"build/lra/{Path(a).name}" if a.startswith("/") else a
                    for a in sys.argv[1:]))


# ---------------------------------------------------------------------------------------------
# data
def load_data(args) -> dict:
    """Train/val/test arrays (uint8 tokens, int64 labels), from ``--data-cache`` when it holds the
    same request, else generated (and cached)."""
    from sw.data import load_task

    want = dict(seed=args.data_seed, n_train=args.n_train, n_eval=args.n_eval,
                seq_len=args.seq_len)
    cache = args.data_cache
    if cache is not None and cache.is_file():
        z = np.load(cache)
        got = {k: int(z["req_" + k]) for k in want}
        if got != want:
            raise UsageError(f"lra_listops: --data-cache {str(cache)!r} holds {got}, not {want}; "
                             "give another path")
        return {k: z[k] for k in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test")}
    t0 = time.time()
    task = load_task("listops", seed=args.data_seed, lra=True, n_train=args.n_train,
                     n_eval=args.n_eval, seq_len=args.seq_len, workers=args.workers)
    d = dict(x_train=task.x_train, y_train=task.y_train, x_val=task.x_val, y_val=task.y_val,
             x_test=task.x_test, y_test=task.y_test)
    print(f"generated {args.n_train + 2 * args.n_eval} samples in {time.time() - t0:.1f} s",
          flush=True)
    if cache is not None:
        import tempfile

        cache.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{cache.name}.", suffix=".npz", dir=cache.parent)
        os.close(fd)
        try:
            np.savez(tmp, **d, **{"req_" + k: v for k, v in want.items()})
            os.replace(tmp, cache)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    return d


def data_summary(d: dict) -> dict:
    lengths = {s: (d["x_" + s] != 0).sum(1) for s in ("train", "val", "test")}
    counts = np.bincount(d["y_test"], minlength=10)
    return dict(n_train=len(d["y_train"]), n_val=len(d["y_val"]), n_test=len(d["y_test"]),
                length_min=int(min(v.min() for v in lengths.values())),
                length_max=int(max(v.max() for v in lengths.values())),
                length_mean_train=round(float(lengths["train"].mean()), 1),
                test_label_counts=counts.tolist(),
                test_majority_acc=round(float(counts.max() / counts.sum()), 4))


def bucket_batches(lengths: np.ndarray, batch: int, rng: np.random.Generator,
                   pool: int = 50) -> list[np.ndarray]:
    """One epoch of index batches: shuffle, sort each pool of ``pool`` batches by length, cut,
    shuffle the batches (every sample once; similar lengths share a batch)."""
    idx = rng.permutation(len(lengths))
    out = []
    for s in range(0, len(idx), batch * pool):
        chunk = idx[s:s + batch * pool]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        out += [chunk[i:i + batch] for i in range(0, len(chunk), batch)]
    return [out[i] for i in rng.permutation(len(out))]


# ---------------------------------------------------------------------------------------------
# model
def model_config(variant: str, args):
    from sw.data import LISTOPS_VOCAB
    from sw.model import ModelConfig

    knobs = dict(VARIANTS[variant])
    if args.smoke:
        knobs.update({k: v for k, v in SMOKE_KNOBS.items() if k in knobs})
    return ModelConfig(task="classify", input_kind="tokens", vocab_size=len(LISTOPS_VOCAB),
                       seq_len=args.seq_len + (getattr(args, "classifier", "mean") == "cls"),
                       n_classes=10, d_model=args.d_model,
                       n_heads=args.n_heads, n_layers=args.n_layers, d_ff=args.d_ff,
                       dropout=args.dropout, variant_seed=1234, **knobs)


def _sdpa_forward(self, x):
    """:class:`sw.model.SoftmaxAttention`'s function through the fused SDPA kernel: the same
    softmax(q k^T / sqrt(hd) + mask) v with dropout on the probabilities."""
    import torch.nn.functional as F

    q, k, v = self._split(x)  # (B, H, T, hd) each
    m = self.mask(x.shape[1], x.device)  # (T, T) bool or None
    y = F.scaled_dot_product_attention(q, k, v, attn_mask=m,
                                       dropout_p=self.drop.p if self.training else 0.0)
    return self._merge(y)  # (B, T, C)


def sinusoidal_positions(n: int, d: int):
    """LRA's fixed position table (``AddPositionEmbs`` with ``posemb_init=None``: sin on even
    channels, cos on odd ones, wavelengths up to 10000): (n, d) float32."""
    import torch

    pos = torch.arange(n, dtype=torch.float32)[:, None]  # (n, 1)
    div = torch.exp(torch.arange(0, d, 2, dtype=torch.float32) * (-math.log(10000.0) / d))
    pe = torch.zeros(n, d)
    pe[:, 0::2] = torch.sin(pos * div)
    pe[:, 1::2] = torch.cos(pos * div)[:, : d // 2]
    return pe  # (n, d) float32


def _key_masked_forward(self, x):
    """:class:`sw.model.SoftmaxAttention`'s forward with LRA's padding mask: keys that are
    padding (``self.key_mask``, (B, T) bool, set by :class:`LraClassifier` before each pass) get
    no probability. A large finite negative (not -inf) keeps a row without real keys finite."""
    q, k, v = self._split(x)  # (B, H, T, hd) each
    T = x.shape[1]
    # the scale goes on q and both masks are filled in place: the product's own storage is the
    # only (B, H, T, T) tensor before the softmax (matmul's backward keeps q and k, not it)
    att = (q * (1.0 / math.sqrt(self.head_dim))) @ k.transpose(-2, -1)  # (B, H, T, T)
    m = self.mask(T, x.device)
    if m is not None:
        att.masked_fill_(~m, float("-inf"))
    att.masked_fill_(~self.key_mask[:, None, None, :], -1e9)
    att = self.drop(att.softmax(dim=-1))
    return self._merge(att @ v)  # (B, T, C)


def lra_init(model) -> None:
    """LRA's initialisers (``--init lra``) on a :class:`sw.model.LightTransformer` or the
    :class:`LraClassifier` around one, in place. From ``transformer.py`` and
    ``common_layers.py`` of google-research/long-range-arena: token embedding N(0, 1); the
    attention's query, key, value and output kernels and both MLP kernels Xavier-uniform (each of
    q, k and v on its own d x d matrix, as Flax flattens ``DenseGeneral`` kernels to 2-D), their
    biases N(0, 1e-6); the classifier's Dense layers LeCun-normal (truncated) with zero bias.
    Other parameters (LayerNorms, learned positions, a variant's own projections) keep the
    LightTransformer's initialisation. LRA's attention has no biases; ours keep theirs, at
    N(0, 1e-6)."""
    import torch
    from torch import nn

    base = getattr(model, "base", model)
    with torch.no_grad():
        nn.init.normal_(base.embed.weight, std=1.0)
        for blk in base.blocks:
            attn = blk.attn
            linears = [attn.proj] + [m for m in blk.ffn.modules() if isinstance(m, nn.Linear)]
            for w in attn.qkv.weight.split(attn.proj.in_features, dim=0):  # q, k, v: (inner, C)
                nn.init.xavier_uniform_(w)
            nn.init.normal_(attn.qkv.bias, std=1e-6)
            for m in linears:
                nn.init.xavier_uniform_(m.weight)
                nn.init.normal_(m.bias, std=1e-6)
        head = base.head
        for m in (head.modules() if isinstance(head, nn.Module) else ()):
            if isinstance(m, nn.Linear):
                # jax's lecun_normal: a normal truncated at +-2 std, rescaled to variance 1/fan_in
                std = 1.0 / math.sqrt(m.in_features) / 0.87962566103423978
                nn.init.trunc_normal_(m.weight, std=std, a=-2 * std, b=2 * std)
                nn.init.zeros_(m.bias)


def _lra_classifier_class():
    import torch
    from torch import nn

    class LraClassifier(nn.Module):
        """LRA's classifier around a :class:`sw.model.LightTransformer` (``--classifier``,
        ``--positions``, ``--pad-mask``): optionally a learned CLS vector (zeros at start, as
        LRA's ``cls`` parameter) before the tokens and an MLP head on it (``classifier_head``:
        Dense(mlp_dim) -> ReLU -> Dense(classes)), LRA's fixed sinusoidal positions instead of
        the learned ones, and padding keys masked in softmax attention. The blocks, embedding
        and final LayerNorm are the LightTransformer's own. ``forward(x)``: (B, T) int64 ->
        (B, classes) float32."""

        def __init__(self, base, classifier: str, positions: str, pad_mask: bool):
            super().__init__()
            cfg = base.cfg
            self.base, self.classifier, self.pad_mask = base, classifier, pad_mask
            self.cls = (nn.Parameter(torch.zeros(1, 1, cfg.d_model))
                        if classifier == "cls" else None)
            if classifier == "cls":  # the MLP head replaces the Linear one (no unused weights)
                base.head = nn.Sequential(nn.Linear(cfg.d_model, cfg.d_ff), nn.ReLU(),
                                          nn.Linear(cfg.d_ff, cfg.n_classes))
            if positions == "sinusoidal":
                del base.pos  # the fixed table replaces the learned one
                self.register_buffer("pos", sinusoidal_positions(cfg.seq_len, cfg.d_model),
                                     persistent=False)
            else:
                self.pos = None

        def forward(self, x):
            base = self.base
            real = x != 0  # (B, T) bool
            h = base.embed(x)  # (B, T, C)
            if self.cls is not None:
                B = x.shape[0]
                h = torch.cat([self.cls.expand(B, 1, -1).to(h.dtype), h], dim=1)
                real = torch.cat([real.new_ones(B, 1), real], dim=1)
            T = h.shape[1]
            h = base.drop(h + (self.pos if self.pos is not None else base.pos)[:T])
            for blk in base.blocks:
                if self.pad_mask:
                    blk.attn.key_mask = real
                h = blk(h)
            h = base.ln_f(h)  # (B, T, C)
            if self.cls is not None:
                return base.head(h[:, 0]).float()
            m = real.unsqueeze(-1).to(h.dtype)  # (B, T, 1)
            return base.head((h * m).sum(1) / m.sum(1).clamp_min(1)).float()

    return LraClassifier


def lra_head_settings(args) -> dict:
    """The classifier settings a run records (and a resumed run must match)."""
    return dict(classifier=args.classifier, positions=args.positions, pad_mask=args.pad_mask,
                init=args.init)


def build_model(variant: str, args, device):
    import torch
    from torch.utils.checkpoint import checkpoint

    from sw.model import LightTransformer, SoftmaxAttention

    cfg = model_config(variant, args)
    torch.manual_seed(args.seed)
    model = LightTransformer(cfg)
    if args.pad_mask:
        if not all(isinstance(b.attn, SoftmaxAttention) for b in model.blocks):
            raise UsageError(f"lra_listops: --pad-mask masks softmax attention only (full, "
                             f"window, random_sparse), not {variant!r}")
        for b in model.blocks:
            b.attn.forward = types.MethodType(_key_masked_forward, b.attn)
    fused = [b.attn for b in model.blocks if isinstance(b.attn, SoftmaxAttention)
             and args.softmax_impl == "sdpa"]
    if fused:
        # the fused path must compute the module's own function (fp32, eval, T = 64)
        a = fused[0].eval()
        xt = torch.randn(2, min(64, cfg.seq_len), cfg.d_model, generator=torch.Generator()
                         .manual_seed(0))
        with torch.no_grad():
            ref = a(xt)
            got = _sdpa_forward(a, xt)
        err = float((ref - got).abs().max())
        if err > 1e-4:
            raise AssertionError(f"SDPA path differs from SoftmaxAttention by {err}")
        for a in fused:
            a.forward = types.MethodType(_sdpa_forward, a)
    ckpt = args.grad_checkpoint == "on" or (args.grad_checkpoint == "auto"
                                            and variant in CHECKPOINTED)
    if ckpt:
        for blk in model.blocks:
            def fwd(h, _f=blk.forward):
                if torch.is_grad_enabled():
                    return checkpoint(_f, h, use_reentrant=False)
                return _f(h)
            blk.forward = fwd
    if (args.classifier, args.positions, args.pad_mask) != ("mean", "learned", False):
        model = _lra_classifier_class()(model, args.classifier, args.positions, args.pad_mask)
    if args.init == "lra":
        torch.manual_seed(args.seed)
        lra_init(model)
    return cfg, model.to(device), ckpt


def logits_of(model, xb):
    """The LightTransformer's head on its final features mean-pooled over the real (non-pad)
    tokens, or the LRA classifier's logits: (B, T) int64 -> (B, 10) float32."""
    if not hasattr(model, "features"):  # LraClassifier
        return model(xb)
    h = model.features(xb)  # (B, T, C)
    m = (xb != 0).unsqueeze(-1).to(h.dtype)  # (B, T, 1)
    return model.head((h * m).sum(1) / m.sum(1).clamp_min(1)).float()


def _batch(x: np.ndarray, idx: np.ndarray, device, seq_len: int):
    import torch

    n = int((x[idx] != 0).sum(1).max())
    T = min(seq_len, -(-n // PAD_MULTIPLE) * PAD_MULTIPLE)
    return torch.from_numpy(x[idx, :T].astype(np.int64)).to(device, non_blocking=True)


def evaluate(model, x, y, args, device, batch: int = 64) -> tuple[float, float]:
    import torch
    import torch.nn.functional as F

    order = np.argsort((x != 0).sum(1), kind="stable")
    model.eval()
    correct, loss = 0, 0.0
    with torch.no_grad(), _autocast(args, device):
        for s in range(0, len(order), batch):
            idx = order[s:s + batch]
            logits = logits_of(model, _batch(x, idx, device, args.seq_len))
            yt = torch.from_numpy(y[idx]).to(device)
            loss += float(F.cross_entropy(logits, yt, reduction="sum"))
            correct += int((logits.argmax(-1) == yt).sum())
    model.train()
    return correct / len(y), loss / len(y)


def _autocast(args, device):
    import contextlib

    import torch

    if args.precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def lr_at(step: int, args) -> float:
    """LRA's ``constant * linear_warmup * rsqrt_decay`` at optimizer step ``step`` (1-based)."""
    return args.lr * min(1.0, step / args.warmup) / math.sqrt(max(step, args.warmup))


def macs(cfg) -> dict:
    from sw.model import count_macs

    b = count_macs(cfg, seq_len=cfg.seq_len, breakdown=True)
    return dict(total=b["total"], attention=b["attention"])


# ---------------------------------------------------------------------------------------------
# training
def train_variant(variant: str, d: dict, args, device, report) -> dict:
    import torch
    import torch.nn.functional as F

    from sw.model import count_params

    cfg, model, ckpt = build_model(variant, args, device)
    micro = args.micro_batch or (MICRO_BATCH.get(variant, args.batch) if not args.smoke
                                 else args.batch)
    micro = min(micro, args.batch)
    opt = torch.optim.AdamW(model.parameters(), lr=lr_at(1, args), betas=PAPER["betas"],
                            eps=PAPER["eps"], weight_decay=args.weight_decay)
    # torch's AdamW decays p by lr * wd, as Flax's Adam(weight_decay=...) in LRA does
    rng = np.random.default_rng(args.seed)
    lengths = (d["x_train"] != 0).sum(1)
    run = dict(variant=variant, config=cfg.to_dict(), params=count_params(model), macs=macs(cfg),
               micro_batch=micro, grad_checkpoint=ckpt, seed=args.seed,
               head=lra_head_settings(args), steps_planned=args.steps, steps=0, curve=[],
               status="running")
    best_acc, best_state, best_step = -1.0, None, 0
    step, epoch, skip, stop, done_s = 0, 0, 0, None, 0.0
    ck = None if args.resume_dir is None else args.resume_dir / f"{variant}.pt"
    if ck is not None and ck.is_file():
        # resume a run cut by --time-budget-s (same variant and settings)
        st = torch.load(ck, map_location=device, weights_only=False)
        if (st["config"] != cfg.to_dict() or st["seed"] != args.seed
                or st.get("head", lra_head_settings(args)) != lra_head_settings(args)):
            raise UsageError(f"lra_listops: {str(ck)!r} holds another run; give another "
                             "--resume-dir")
        model.load_state_dict(st["model"])
        opt.load_state_dict(st["opt"])
        best_acc, best_state, best_step = st["best_acc"], st["best_state"], st["best_step"]
        step, epoch, skip, done_s = st["step"], st["epoch"] - 1, st["pos"], st["train_s"]
        rng.bit_generator.state = st["epoch_rng"]
        torch.set_rng_state(st["torch_rng"].cpu())
        if device.type == "cuda":
            torch.cuda.set_rng_state(st["cuda_rng"].cpu())
        run.update(st["run"], resumed=st["run"].get("resumed", 0) + 1, status="running")
        print(f"{variant}: resumed at step {step}", flush=True)
    report(run)
    t0 = time.time() - done_s
    t_call = time.time()
    if step >= args.steps:
        stop = "steps"
    model.train()
    while stop is None:
        epoch += 1
        epoch_rng = rng.bit_generator.state
        for i, idx in enumerate(bucket_batches(lengths, args.batch, rng)):
            pos = i
            if skip:
                skip -= 1
                continue
            step += 1
            for g in opt.param_groups:
                g["lr"] = lr_at(step, args)
            yt = torch.from_numpy(d["y_train"][idx]).to(device)
            xb = _batch(d["x_train"], idx, device, args.seq_len)
            total = 0.0
            for s in range(0, len(idx), micro):
                with _autocast(args, device):
                    logits = logits_of(model, xb[s:s + micro])
                loss = F.cross_entropy(logits, yt[s:s + micro], reduction="sum") / len(idx)
                loss.backward()
                total += float(loss.detach())
            norm = float(torch.nn.utils.clip_grad_norm_(
                model.parameters(), args.clip_norm if args.clip_norm > 0 else float("inf")))
            if math.isfinite(total) and math.isfinite(norm):
                opt.step()
            else:  # skip the update, as a loss scaler would; give up after 10
                run["skipped_steps"] = run.get("skipped_steps", 0) + 1
                if run["skipped_steps"] > 10:
                    stop = "non-finite loss"
            opt.zero_grad(set_to_none=True)
            if stop:
                break
            last = step >= args.steps
            out_of_time = (args.time_budget_s is not None
                           and time.time() - t_call >= args.time_budget_s)
            if step % args.eval_every == 0 or last or out_of_time:
                acc, vloss = evaluate(model, d["x_val"], d["y_val"], args, device)
                run["curve"].append(dict(step=step, train_loss=round(total, 4),
                                         val_acc=round(acc, 4), val_loss=round(vloss, 4),
                                         s=round(time.time() - t0, 1)))
                if acc > best_acc:
                    best_acc, best_step = acc, step
                    best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
                run.update(steps=step, epochs=epoch, best_val_acc=round(best_acc, 4),
                           best_step=best_step, train_s=round(time.time() - t0, 1))
                report(run)
                print(f"{variant}: step {step} loss {total:.3f} val {acc:.4f} "
                      f"({time.time() - t0:.0f} s)", flush=True)
            if last:
                stop = "steps"
            elif out_of_time:
                stop = "time budget"
            if stop:
                break
    run.update(steps=step, epochs=epoch, stopped_by=stop, train_s=round(time.time() - t0, 1),
               s_per_step=round((time.time() - t0) / max(step, 1), 4))
    save = ck is not None and stop == "time budget"
    cur_state = {k: v.detach().clone() for k, v in model.state_dict().items()} if save else None
    if best_state is not None:
        model.load_state_dict(best_state)
        acc, tloss = evaluate(model, d["x_test"], d["y_test"], args, device)
        # selection used validation only; a resumed run is tested again at its own end
        run.update(test_acc=round(acc, 4), test_loss=round(tloss, 4),
                   test_evaluations=run.get("test_evaluations", 0) + 1)
    if save:
        ck.parent.mkdir(parents=True, exist_ok=True)
        torch.save(dict(config=cfg.to_dict(), seed=args.seed, head=lra_head_settings(args),
                        model=cur_state,
                        opt=opt.state_dict(), best_acc=best_acc, best_state=best_state,
                        best_step=best_step, step=step, epoch=epoch, pos=pos + 1,
                        epoch_rng=epoch_rng, train_s=time.time() - t0,
                        torch_rng=torch.get_rng_state(),
                        cuda_rng=torch.cuda.get_rng_state() if device.type == "cuda" else None,
                        run={k: v for k, v in run.items() if k != "status"}),
                   str(ck) + ".tmp")
        os.replace(str(ck) + ".tmp", ck)
    run["status"] = "done"
    report(run)
    print(f"{variant}: best val {best_acc:.4f} at step {best_step}, test "
          f"{run.get('test_acc')}", flush=True)
    return run


# ---------------------------------------------------------------------------------------------
# timing
def time_variant(variant: str, args, device, batch: int, repeats: int = 3) -> dict:
    """Forward time per sample at T = seq_len (eval, the run's precision) and one training step
    at the full batch, both the best of ``repeats`` after warm-up."""
    import torch
    import torch.nn.functional as F

    cfg, model, ckpt = build_model(variant, args, device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    g = torch.Generator().manual_seed(0)
    xb = torch.randint(1, cfg.vocab_size, (batch, cfg.seq_len), generator=g).to(device)
    yb = torch.randint(0, 10, (batch,), generator=g).to(device)
    model.eval()
    with torch.no_grad(), _autocast(args, device):
        logits_of(model, xb)
        sync()
        fwd = []
        for _ in range(repeats):
            t = time.perf_counter()
            logits_of(model, xb)
            sync()
            fwd.append(time.perf_counter() - t)
    model.train()
    micro = min(args.micro_batch or MICRO_BATCH.get(variant, batch), batch)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    steps = []
    for i in range(repeats + 1):
        t = time.perf_counter()
        for s in range(0, batch, micro):
            with _autocast(args, device):
                loss = F.cross_entropy(logits_of(model, xb[s:s + micro]), yb[s:s + micro])
            loss.backward()
        model.zero_grad(set_to_none=True)
        sync()
        if i:
            steps.append(time.perf_counter() - t)
    peak = torch.cuda.max_memory_allocated() / 2 ** 30 if device.type == "cuda" else None
    return dict(variant=variant, T=cfg.seq_len, batch=batch, precision=args.precision,
                ms_per_sample=round(1e3 * min(fwd) / batch, 4),
                train_step_s=round(min(steps), 4), micro_batch=micro, grad_checkpoint=ckpt,
                peak_train_gib=None if peak is None else round(peak, 2), macs=macs(cfg),
                params=sum(p.numel() for p in model.parameters()))


# ---------------------------------------------------------------------------------------------
def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--variants", type=_csv_variants, default=list(VARIANTS),
                   help=f"comma-separated (default: all): {','.join(VARIANTS)}")
    p.add_argument("--device", default=None, help="cpu | cuda (default: cuda when available)")
    p.add_argument("--precision", choices=("bf16", "fp32"), default="bf16",
                   help="bf16 = torch.autocast(bfloat16) (default), fp32 = none")
    p.add_argument("--json", type=json_path_type, default=None, metavar="PATH",
                   help="write the report here (- for stdout); rewritten after every "
                        "evaluation, so an interrupted run leaves its progress")
    p.add_argument("--data-cache", type=Path, default=None, metavar="NPZ",
                   help="load the generated data from NPZ, or generate and write it there")
    p.add_argument("--make-data", action="store_true",
                   help="only generate the data into --data-cache and exit")
    p.add_argument("--time-only", action="store_true",
                   help="only time each variant (forward per sample, one training step)")
    p.add_argument("--time-batch", type=_positive(int), default=32)
    p.add_argument("--smoke", action="store_true",
                   help="tiny CPU-sized run that only checks the script (seconds)")
    p.add_argument("--seed", type=int, default=0, help="model init, dropout and batch order")
    p.add_argument("--data-seed", type=int, default=0, help="generator seed")
    p.add_argument("--workers", type=_positive(int), default=None,
                   help="generator processes (default: all cores)")
    p.add_argument("--steps", type=_positive(int), default=None)
    p.add_argument("--time-budget-s", type=_positive(float), default=None,
                   help="stop training after this many seconds (then select and test)")
    p.add_argument("--eval-every", type=_positive(int), default=250)
    p.add_argument("--micro-batch", type=_positive(int), default=None,
                   help="split each batch into parts of this size (default: per variant)")
    p.add_argument("--grad-checkpoint", choices=("auto", "on", "off"), default="auto")
    p.add_argument("--sdpa-backend", choices=("auto", "flash", "efficient", "math"),
                   default="auto",
                   help="with --softmax-impl sdpa: the one fused kernel torch may pick (math, "
                        "the unfused fallback, is always allowed; default: torch's choice)")
    p.add_argument("--softmax-impl", choices=("module", "sdpa"), default="module",
                   help="full/window/random_sparse: the module's own dense forward (default) or "
                        "the fused SDPA kernel (its H200 runs ended in non-finite losses)")
    p.add_argument("--clip-norm", type=float, default=1.0,
                   help="clip the global gradient norm to this (default 1.0; 0 = off, as LRA)")
    p.add_argument("--classifier", choices=("mean", "cls"), default="mean",
                   help="mean: the LightTransformer's head on features mean-pooled over the "
                        "real tokens (default); cls: LRA's CLS token and MLP head")
    p.add_argument("--positions", choices=("learned", "sinusoidal"), default="learned",
                   help="learned: the LightTransformer's table (default); sinusoidal: LRA's "
                        "fixed table")
    p.add_argument("--pad-mask", action="store_true",
                   help="mask padding keys in softmax attention, as LRA does (module forward "
                        "of full, window, random_sparse only)")
    p.add_argument("--init", choices=("torch", "lra"), default="torch",
                   help="torch: the LightTransformer's own initialisation (default); lra: LRA's "
                        "(embedding N(0, 1), Xavier-uniform attention and MLP kernels, "
                        "LeCun-normal classifier)")
    p.add_argument("--resume-dir", type=Path, default=None, metavar="DIR",
                   help="a run stopped by --time-budget-s saves its state to DIR/VARIANT.pt; "
                        "the next run with the same DIR continues it")
    args = p.parse_args(argv)
    size = SMOKE if args.smoke else PAPER
    for k in ("d_model", "n_heads", "n_layers", "d_ff", "seq_len", "batch", "warmup"):
        setattr(args, k, size[k])
    args.steps = args.steps or size["steps"]
    if args.smoke:
        args.eval_every = min(args.eval_every, SMOKE["eval_every"])
        args.device = args.device or "cpu"
    args.n_train = SMOKE["n_train"] if args.smoke else 96_000
    args.n_eval = SMOKE["n_eval"] if args.smoke else 2_000
    args.lr, args.weight_decay, args.dropout = PAPER["lr"], PAPER["weight_decay"], \
        PAPER["dropout"]
    if args.seed < 0 or args.data_seed < 0:
        p.error("--seed and --data-seed must be >= 0")
    if args.pad_mask and args.softmax_impl != "module":
        p.error("--pad-mask needs --softmax-impl module")
    if args.make_data and args.data_cache is None:
        p.error("--make-data needs --data-cache")
    if args.data_cache is not None:
        try:
            check_output_path(args.data_cache, option="--data-cache")
        except ValueError as exc:
            p.error(str(exc))
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.make_data:
        d = load_data(args)
        print(data_summary(d))
        return 0
    import torch

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError("lra_listops: --device cuda needs a CUDA GPU; none is visible")
    args.device = str(device)
    if args.sdpa_backend != "auto":
        torch.backends.cuda.enable_flash_sdp(args.sdpa_backend == "flash")
        torch.backends.cuda.enable_mem_efficient_sdp(args.sdpa_backend == "efficient")
        # math stays allowed: the start-up check runs on the CPU, where only math exists; on
        # the GPU torch prefers any enabled fused kernel to it
        torch.backends.cuda.enable_math_sdp(True)
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    t_start = time.time()
    doc = dict(meta=_meta(args, torch), settings=dict(
        PAPER, source=SOURCE, precision=args.precision, eval_every=args.eval_every,
        steps=args.steps, time_budget_s=args.time_budget_s, smoke=args.smoke,
        clip_norm=args.clip_norm, softmax_impl=args.softmax_impl,
        sdpa_backend=args.sdpa_backend,
        pooling=("CLS token, MLP head" if args.classifier == "cls"
                 else "mean over non-pad tokens"),
        classifier=args.classifier, positions=args.positions, pad_mask=args.pad_mask,
        init=args.init, pad_multiple=PAD_MULTIPLE,
        generator=dict(fn="sw.data.listops_lra_generate", seed=args.data_seed,
                       seq_len=args.seq_len)))

    def report(_=None):
        doc["meta"]["wall_s"] = round(time.time() - t_start, 1)
        if args.json is not None:
            write_json(args.json, doc, kind="bench.lra_listops")

    if args.time_only:
        doc["timing"] = []
        for v in args.variants:
            try:
                doc["timing"].append(time_variant(v, args, device, args.time_batch))
            except torch.OutOfMemoryError as exc:  # recorded; the other variants still run
                doc["timing"].append(dict(variant=v, error=f"out of memory: {exc}"[:300]))
            print(doc["timing"][-1], flush=True)
            report()
            if device.type == "cuda":
                torch.cuda.empty_cache()
        return 0
    d = load_data(args)
    doc["data"] = data_summary(d)
    doc["runs"] = []
    for v in args.variants:
        run: dict = {}
        doc["runs"].append(run)
        train_variant(v, d, args, device, lambda r, _run=run: (_run.update(r), report()))
    report()
    if args.json is not None and args.json != STDOUT:
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
