# SPDX-License-Identifier: Apache-2.0
"""Training for the LightTransformer: AdamW + warm-up/cosine schedule, best-on-validation
checkpoint, JSON log, knowledge distillation, structured pruning with fine-tuning, and the
seq2seq seed model.

The ``lightformer train`` command is ``sw.train_command``. torch is imported only inside
functions, so importing this module stays cheap.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import platform
import time
from pathlib import Path

from sw.checkpoint import save_model
from sw.report import atomic_write_text

__all__ = [
    "train",
    "evaluate_fp32",
    "kd_loss",
    "config_from_task",
    "prune_and_finetune",
    "train_seq2seq",
    "evaluate_seq2seq",
    "set_threads",
    "train_threads",
    "write_log",
]


#: torch intra-op threads of every training run, whatever the machine's core count or
#: OMP_NUM_THREADS: the thread count decides how float reductions are split, so it changes the
#: trained weights (three epochs of the digits model give three different models with 1, 2 and
#: 4 threads). 2 threads made the shipped artifact.
TRAIN_THREADS = 2


def train_threads() -> int:
    """The thread count training uses: ``LIGHTFORMER_THREADS`` if set (``ValueError`` unless it
    is an integer >= 1), else :data:`TRAIN_THREADS`."""
    text = os.environ.get("LIGHTFORMER_THREADS", "").strip()
    if not text:
        return TRAIN_THREADS
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"LIGHTFORMER_THREADS must be an integer >= 1, not {text!r}")
    return int(text)


def set_threads() -> int:
    """Set torch's intra-op threads to :func:`train_threads` (the same on every machine, so a
    seeded run gives the same weights); returns the count."""
    import torch

    n = train_threads()
    torch.set_num_threads(n)
    return n


def config_from_task(task, **overrides):
    """A :class:`sw.model.ModelConfig` from ``task.config_hints`` plus ``overrides``."""
    from sw.model import ModelConfig

    hints = {k: v for k, v in task.config_hints.items() if k in ModelConfig.__dataclass_fields__}
    hints.update(overrides)
    return ModelConfig(**hints)


def _tensors(x, y, device):
    import numpy as np
    import torch

    if not isinstance(x, np.ndarray) or not isinstance(y, np.ndarray):
        raise TypeError(f"x and y must be NumPy arrays, not {type(x).__name__}, "
                        f"{type(y).__name__}")
    if len(x) != len(y):
        raise ValueError(f"x and y must have the same length, not {len(x)} and {len(y)}")
    xt = torch.from_numpy(x)
    xt = xt.float() if xt.is_floating_point() else xt.long()
    return xt.to(device), torch.from_numpy(y).long().to(device)


def _loss_and_correct(logits, y):
    import torch.nn.functional as F

    flat = logits.reshape(-1, logits.shape[-1])  # (B*T, K) or (B, K) float32
    yy = y.reshape(-1)
    loss = F.cross_entropy(flat, yy)
    return loss, int((flat.argmax(-1) == yy).sum()), yy.numel()


def kd_loss(student_logits, teacher_logits, y, temperature: float, alpha: float):
    """Hinton et al. 2015: ``alpha * T^2 * KL(softmax(t/T) || softmax(s/T)) + (1-alpha) * CE``."""
    import torch.nn.functional as F

    if not temperature > 0:
        raise ValueError(f"kd temperature must be > 0, not {temperature!r}")
    if not 0 <= alpha <= 1:
        raise ValueError(f"kd alpha must be in [0, 1], not {alpha!r}")
    k = student_logits.shape[-1]
    s = student_logits.reshape(-1, k) / temperature  # (N, K) float32
    t = teacher_logits.reshape(-1, k) / temperature  # (N, K) float32
    soft = F.kl_div(F.log_softmax(s, -1), F.log_softmax(t, -1), log_target=True,
                    reduction="batchmean") * temperature ** 2
    hard = F.cross_entropy(student_logits.reshape(-1, k), y.reshape(-1))
    return alpha * soft + (1 - alpha) * hard


def evaluate_fp32(model, x, y, *, batch_size: int = 512, device=None) -> float:
    """Accuracy of ``model`` on NumPy ``x, y`` (per token for a language model)."""
    import torch

    device = device or next(model.parameters()).device
    xt, yt = _tensors(x, y, device)
    was = model.training
    model.eval()
    correct = total = 0
    with torch.no_grad():
        for i in range(0, len(xt), batch_size):
            _, c, n = _loss_and_correct(model(xt[i:i + batch_size]), yt[i:i + batch_size])
            correct, total = correct + c, total + n
    model.train(was)
    return correct / max(total, 1)


def _evaluate_loss(model, xt, yt, batch_size=512):
    import torch

    model.eval()
    loss_sum = correct = total = 0.0
    with torch.no_grad():
        for i in range(0, len(xt), batch_size):
            loss, c, n = _loss_and_correct(model(xt[i:i + batch_size]), yt[i:i + batch_size])
            loss_sum += float(loss.detach()) * n
            correct, total = correct + c, total + n
    model.train()
    return loss_sum / max(total, 1), correct / max(total, 1)


def _cosine(step: int, total: int, warmup: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    p = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1 + math.cos(math.pi * min(p, 1.0)))


def train(cfg, task, *, epochs: int = 20, lr: float = 3e-3, batch_size: int = 64, seed: int = 0,
          device: str = "cpu", log_path=None, teacher=None, kd_temperature: float = 2.0,
          kd_alpha: float = 0.5, qat: bool = False, weight_decay: float = 0.01, model=None,
          checkpoint_path=None, progress: bool = True, desc: str | None = None):
    """Train a :class:`sw.model.LightTransformer` for ``cfg`` on ``task``.

    AdamW with linear warm-up (5 % of steps) then cosine decay to 0; the weights of the epoch with
    the best validation accuracy (first one on ties) are restored at the end; when fine-tuning a
    given ``model``, its starting weights are candidate "epoch 0". ``teacher``: a
    trained model whose soft targets are mixed in (:func:`kd_loss`). ``qat=True`` wraps the model
    with ``sw.qat.prepare_qat`` (fake-quant, straight-through estimator) before training.
    ``model``: continue from this model (fine-tuning) instead of a fresh one.

    Returns ``(model, history)``; ``history`` (also written to ``log_path`` as JSON) has the
    config, seed, per-epoch loss/accuracy/lr/time, best epoch, val/test accuracy, params, MACs.
    ``checkpoint_path`` is written before ``log_path`` (both atomically), and the log records the
    checkpoint's SHA-256 (``model_sha256``), so a log never describes another model.
    """
    import torch

    from sw.model import LightTransformer, count_macs, count_params

    for name, v, lo in (("epochs", epochs, 0), ("batch_size", batch_size, 1), ("seed", seed, 0)):
        if isinstance(v, bool) or not isinstance(v, int) or v < lo:
            raise ValueError(f"{name} must be an integer >= {lo}, not {v!r}")
    if not lr > 0:
        raise ValueError(f"lr must be > 0, not {lr!r}")
    if device not in ("cpu", "cuda") and not str(device).startswith("cuda:"):
        raise ValueError(f"device must be 'cpu' or 'cuda', not {device!r}")
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("device must be 'cpu' here: torch sees no CUDA device")
    threads = set_threads()
    torch.manual_seed(seed)
    fine_tune = model is not None
    if model is None:
        model = LightTransformer(cfg)
    cfg = model.cfg
    if qat:
        from sw.qat import prepare_qat

        model = prepare_qat(model, task.x_train[:256])
    model.to(device)
    if teacher is not None:
        teacher.to(device).eval()

    xtr, ytr = _tensors(task.x_train, task.y_train, device)
    xva, yva = _tensors(task.x_val, task.y_val, device)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    steps_per_epoch = max(1, math.ceil(len(xtr) / batch_size))
    total = epochs * steps_per_epoch
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: _cosine(s, total, max(1, total // 20)))
    gen = torch.Generator().manual_seed(seed)

    hist = dict(task=task.name, seed=seed, device=str(device), torch=torch.__version__,
                threads=threads, host=platform.node(), config=cfg.to_dict(),
                epochs_requested=epochs, lr=lr,
                batch_size=batch_size, weight_decay=weight_decay, qat=bool(qat),
                kd=None if teacher is None else dict(temperature=kd_temperature, alpha=kd_alpha),
                epochs=[])
    best = (-1.0, None, -1)
    t0 = time.time()
    if fine_tune:  # the starting point is a candidate too (epoch 0)
        best = (_evaluate_loss(model, xva, yva)[1], copy.deepcopy(model.state_dict()), 0)
    model.train()
    bar = _progress(range(epochs), progress, desc or f"train {task.name}/{cfg.attention}")
    for ep in bar:
        perm = torch.randperm(len(xtr), generator=gen).to(device)
        loss_sum = correct = seen = 0.0
        for i in range(0, len(xtr), batch_size):
            idx = perm[i:i + batch_size]
            xb, yb = xtr[idx], ytr[idx]
            logits = model(xb)
            loss, c, n = _loss_and_correct(logits, yb)
            if teacher is not None:
                with torch.no_grad():
                    t_logits = teacher(xb)
                loss = kd_loss(logits, t_logits, yb, kd_temperature, kd_alpha)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            loss_sum += float(loss.detach()) * n
            correct, seen = correct + c, seen + n
        val_loss, val_acc = _evaluate_loss(model, xva, yva)
        rec = dict(epoch=ep + 1, train_loss=loss_sum / seen, train_acc=correct / seen,
                   val_loss=val_loss, val_acc=val_acc, lr=sched.get_last_lr()[0],
                   time_s=round(time.time() - t0, 3))
        hist["epochs"].append(rec)
        if val_acc > best[0]:
            best = (val_acc, copy.deepcopy(model.state_dict()), ep + 1)
        if hasattr(bar, "set_postfix"):
            bar.set_postfix(loss=f"{rec['train_loss']:.3f}", val=f"{val_acc:.3f}")
    if best[1] is not None:
        model.load_state_dict(best[1])
    model.eval()
    hist.update(best_epoch=best[2], best_val_acc=best[0] if best[1] is not None else None,
                val_acc=evaluate_fp32(model, task.x_val, task.y_val),
                test_acc=evaluate_fp32(model, task.x_test, task.y_test),
                params=count_params(model), macs=count_macs(model.cfg),
                config=model.cfg.to_dict(), time_s=round(time.time() - t0, 3))
    if checkpoint_path is not None:
        write_log(hist, log_path, save_model(model, checkpoint_path))
    elif log_path is not None:
        write_log(hist, log_path)
    return model, hist


def write_log(hist: dict, log_path, checkpoint=None) -> None:
    """Write a training log atomically; with ``checkpoint`` (an already written file) add its
    SHA-256 as ``model_sha256``, which ``lightformer compile`` checks before trusting the log."""
    if checkpoint is not None:
        hist["model_sha256"] = hashlib.sha256(Path(checkpoint).read_bytes()).hexdigest()
    if log_path is not None:
        atomic_write_text(log_path, json.dumps(hist, indent=1) + "\n")


def _progress(it, enabled: bool, desc: str):
    if not enabled:
        return it
    from tqdm.auto import tqdm

    return tqdm(it, desc=desc, unit="epoch", leave=False)


def prune_and_finetune(model, task, *, keep_heads: int | None = None,
                       ffn_keep_ratio: float | None = None, importance: str = "weight",
                       epochs: int = 5, lr: float = 1e-3, **train_kw):
    """Structured pruning flow: prune heads (keep the ``keep_heads`` most important per layer)
    and/or FFN neurons (``ffn_keep_ratio``), then fine-tune. ``importance``: ``"weight"`` (norms)
    or ``"taylor"`` (gradient x weight on up to 512 training samples). Returns
    ``(model, history)`` with the val/test accuracy right after pruning in
    ``history["acc_after_prune"]`` / ``history["test_acc_after_prune"]``."""
    import torch

    from sw.model import prune_ffn, prune_heads, select_heads

    if importance not in ("weight", "taylor"):
        raise ValueError(f"importance must be 'weight' or 'taylor', not {importance!r}")
    model = model.cpu() if train_kw.get("device", "cpu") == "cpu" else model
    if keep_heads is not None:
        xy = None
        if importance == "taylor":
            dev = next(model.parameters()).device
            xy = _tensors(task.x_train[:512], task.y_train[:512], dev)
        keep = select_heads(model, keep_heads, *(xy or ()))
        prune_heads(model, keep)
    if ffn_keep_ratio is not None:
        prune_ffn(model, ffn_keep_ratio)
    with torch.no_grad():
        after = evaluate_fp32(model, task.x_val, task.y_val)
        after_test = evaluate_fp32(model, task.x_test, task.y_test)
    model, hist = train(model.cfg, task, epochs=epochs, lr=lr, model=model, **train_kw)
    hist.update(acc_after_prune=after, test_acc_after_prune=after_test, keep_heads=keep_heads,
                ffn_keep_ratio=ffn_keep_ratio, importance=importance)
    return model, hist


# ---------------------------------------------------------------------------------------------
# the seq2seq seed model (SeedLightTransformer) on digit copy/reverse/sort
def evaluate_seq2seq(model, x, y, bos: int, *, batch_size: int = 500) -> dict:
    """Greedy-decoding token accuracy and whole-sequence accuracy."""
    model.eval()
    xt, yt = _tensors(x, y, next(model.parameters()).device)
    tok = seq = 0
    for i in range(0, len(xt), batch_size):
        pred = model.generate(xt[i:i + batch_size], yt.shape[1], bos)  # (B, L) int64
        ok = pred == yt[i:i + batch_size]
        tok += int(ok.sum())
        seq += int(ok.all(1).sum())
    return dict(token_acc=tok / yt.numel(), seq_acc=seq / len(yt))


def train_seq2seq(task, *, epochs: int = 10, lr: float = 3e-3, batch_size: int = 128,
                  seed: int = 0, device: str = "cpu", progress: bool = True, log_path=None,
                  **model_kw):
    """Train :class:`sw.model.SeedLightTransformer` with teacher forcing on a digit seq2seq task.
    Returns ``(model, history)`` with greedy-decoding accuracies on val and test."""
    import torch
    import torch.nn.functional as F

    from sw.model import SeedLightTransformer, count_params

    set_threads()
    torch.manual_seed(seed)
    bos = task.config_hints["bos"]
    L = task.y_train.shape[1]
    model = SeedLightTransformer(task.config_hints["vocab_size"],
                                 max_len=max(L + 1, task.x_train.shape[1]), **model_kw).to(device)
    xtr, ytr = _tensors(task.x_train, task.y_train, device)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    spe = max(1, math.ceil(len(xtr) / batch_size))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: _cosine(s, epochs * spe, max(1, epochs * spe // 20)))
    gen = torch.Generator().manual_seed(seed)
    hist = dict(task=task.name, seed=seed, model="SeedLightTransformer", config=model.config,
                epochs=[])
    t0 = time.time()
    for ep in _progress(range(epochs), progress, f"train {task.name}/seed"):
        model.train()
        perm = torch.randperm(len(xtr), generator=gen).to(device)
        tot = 0.0
        for i in range(0, len(xtr), batch_size):
            idx = perm[i:i + batch_size]
            src, tgt = xtr[idx], ytr[idx]
            tin = torch.cat([torch.full_like(tgt[:, :1], bos), tgt[:, :-1]], 1)  # (B, L) int64
            logits = model(src, tin)  # (B, L, V) float32
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tgt.reshape(-1))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            tot += float(loss.detach()) * len(idx)
        hist["epochs"].append(dict(epoch=ep + 1, train_loss=tot / len(xtr),
                                   time_s=round(time.time() - t0, 3)))
    hist.update(val=evaluate_seq2seq(model, task.x_val, task.y_val, bos),
                test=evaluate_seq2seq(model, task.x_test, task.y_test, bos),
                params=count_params(model), time_s=round(time.time() - t0, 3))
    write_log(hist, log_path)
    return model, hist
