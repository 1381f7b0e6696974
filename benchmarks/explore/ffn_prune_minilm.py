"""Experiment (issue 27, FLOP-cutting): remove a share of every MiniLM layer's feed-forward neurons
(the same count in each layer) and report mean and worst cosine to the fp32 model on the 512
held-out sentences; optionally distil the pruned encoder back on calibration and stdlib docstring
sentences, and (``--speed``) time OpenVINO int8 of the pruned models against the whole one,
interleaved. ``--rule``: which neurons go and what repairs the layer, "rms" (RMS activation times
output-weight norm), "std" (activation spread times norm, each removed neuron's mean folded into
the output bias) or "lsq" (as "std", then the output layer refit by least squares to the whole
layer's output on ``--fit-sentences`` calibration sentences).

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/explore/ffn_prune_minilm.py [--ratios 0.125,0.25]
        [--rule lsq] [--fit-sentences 2000] [--distill-epochs 1] [--speed --rounds 7]
"""

import argparse
import copy
import os
import statistics
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
import torch  # noqa: E402

from accelkit.techniques._blocks import bert_encoder_layers  # noqa: E402
from accelkit.techniques.distill import (  # noqa: E402
    SentenceDistillConfig,
    cached_teacher_embeddings,
    distill_sentence_encoder,
)
from accelkit.techniques.distill.sentence import _length_sorted_batches, sentence_embeddings  # noqa: E402
from accelkit.variants import build_variant  # noqa: E402
from accelkit.workloads import get_workload  # noqa: E402


def neuron_stats(model, batches, keep: list | None = None) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per layer, each feed-forward neuron's (mean, standard deviation) activation over real tokens;
    ``keep``: a list that gets each layer's (tokens, neurons) activations."""
    layers = bert_encoder_layers(getattr(model, "base_model", model))
    sums = [torch.zeros(layer.intermediate.dense.out_features, dtype=torch.float64) for layer in layers]
    squares = [torch.zeros_like(s) for s in sums]
    count = [0]
    mask_now = {}

    def hook(i):
        def record(module, inputs, output):
            real = output[mask_now["mask"].bool()].double()
            if keep is not None:
                keep[i].append(real.float())
            sums[i] += real.sum(0)
            squares[i] += real.pow(2).sum(0)
        return record

    handles = [layer.intermediate.register_forward_hook(hook(i)) for i, layer in enumerate(layers)]
    if keep is not None:
        keep[:] = [[] for _ in layers]
    try:
        with torch.no_grad():
            for _, batch in batches:
                mask_now["mask"] = batch["attention_mask"]
                count[0] += int(batch["attention_mask"].sum())
                model(**batch)
    finally:
        for h in handles:
            h.remove()
    out = []
    for s, q in zip(sums, squares, strict=True):
        mean = s / count[0]
        out.append((mean.float(), (q / count[0] - mean.pow(2)).clamp(min=0).sqrt().float()))
    return out


def prune_ffn_(model, stats, ratio: float, rule: str, acts: list | None = None) -> None:
    """Remove ``ratio`` of each layer's neurons: by RMS activation x output-weight norm ("rms"), or
    by standard deviation x norm with each removed neuron's mean folded into the output bias ("std"),
    or chosen as "std" and the output layer refit to the whole layer's output by least squares on
    the calibration activations ("lsq")."""
    import torch_pruning as tp

    layers = bert_encoder_layers(getattr(model, "base_model", model))
    for i, (layer, (mean, std)) in enumerate(zip(layers, stats, strict=True)):
        out = layer.output.dense
        spread = (std if rule != "rms" else (std.pow(2) + mean.pow(2)).sqrt()) * out.weight.norm(dim=0)
        order = spread.argsort()
        drop, kept = order[: int(round(ratio * len(spread)))], order[int(round(ratio * len(spread))):].sort().values
        if rule == "std":
            with torch.no_grad():
                out.bias += out.weight[:, drop] @ mean[drop]
        if rule == "lsq":
            a = torch.cat(acts[i]).double()  # (tokens, neurons)
            target = a @ out.weight.double().T  # the whole layer's output, bias aside
            x = torch.cat([a[:, kept], torch.ones(len(a), 1, dtype=a.dtype)], dim=1)
            gram = x.T @ x
            gram += 1e-3 * gram.diagonal().mean() * torch.eye(len(gram), dtype=gram.dtype)
            sol = torch.linalg.solve(gram, x.T @ target)  # (kept + 1, out)
            with torch.no_grad():
                full = torch.zeros_like(out.weight)
                full[:, kept] = sol[:-1].T.float()
                out.weight.copy_(full)
                out.bias += sol[-1].float()
        tp.prune_linear_out_channels(layer.intermediate.dense, drop.tolist())
        tp.prune_linear_in_channels(out, drop.tolist())


def cosines(a: torch.Tensor, b: torch.Tensor) -> tuple[float, float]:
    c = torch.nn.functional.cosine_similarity(a.float(), b.float(), dim=-1)
    return float(c.mean()), float(c.min())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ratios", default="0.125,0.25,0.375")
    parser.add_argument("--distill-epochs", type=int, default=0)
    parser.add_argument("--rule", choices=("rms", "std", "lsq"), default="lsq")
    parser.add_argument("--fit-sentences", type=int, default=512)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--speed", action="store_true")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(2)
    wl = get_workload("minilm")
    teacher = wl.build_model().eval()
    tok = wl.tokenizer
    heldout = list(wl.eval_data())
    calib = list(wl.calib_data())
    ref = sentence_embeddings(teacher, tok, heldout)
    acts: list = []
    stats = neuron_stats(teacher, _length_sorted_batches(tok, calib[:args.fit_sentences], 32, 128),
                         acts if args.rule == "lsq" else None)
    train = calib + list(wl.unlabelled_text("stdlib-docstrings"))
    targets = cached_teacher_embeddings(wl, teacher, train, 128) if args.distill_epochs else None
    students = {}
    for ratio in (float(r) for r in args.ratios.split(",")):
        student = copy.deepcopy(teacher)
        prune_ffn_(student, stats, ratio, args.rule, acts)
        mean, worst = cosines(sentence_embeddings(student, tok, heldout), ref)
        line = f"ffn -{ratio:.1%}: pruned cos {mean:.4f} / {worst:.4f}"
        if args.distill_epochs:
            start = time.perf_counter()
            cfg = SentenceDistillConfig(keep_layers=(0, 1, 2, 3, 4, 5), epochs=args.distill_epochs, lr=args.lr,
                                        dropout=False)
            student = distill_sentence_encoder(student, targets, tok, train, cfg)
            mean, worst = cosines(sentence_embeddings(student, tok, heldout), ref)
            line += f"; distilled ({args.distill_epochs} epoch(s), {time.perf_counter() - start:.0f} s) " \
                    f"cos {mean:.4f} / {worst:.4f}"
        print(line, flush=True)
        students[ratio] = student.eval()
    if not args.speed:
        return
    settings = wl.default_settings(32)
    built = {"whole": build_variant("openvino-int8", teacher, settings, wl).model}
    for ratio, student in students.items():
        built[f"ffn-{ratio:g}"] = build_variant("openvino-int8", student, settings, wl).model
    times = {name: [] for name in built}
    for name, model in built.items():
        out = wl.predict(model, heldout, settings)
        print(f"{name}: int8 cos {cosines(torch.as_tensor(out), ref)[0]:.4f} / {cosines(torch.as_tensor(out), ref)[1]:.4f}")
    for r in range(args.rounds):
        names = list(built)[r % len(built):] + list(built)[: r % len(built)]
        for name in names:
            start = time.perf_counter()
            wl.predict(built[name], heldout, settings)
            times[name].append(time.perf_counter() - start)
    for name in built:
        ratio = statistics.median(a / b for a, b in zip(times["whole"], times[name], strict=True))
        print(f"{name:10s} {len(heldout) / statistics.median(times[name]):7.1f} sentences/s  {ratio:.3f}x whole")


if __name__ == "__main__":
    main()
