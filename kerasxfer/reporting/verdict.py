"""The verdict: a decision between scratch and transfer that says how sure it is (no TensorFlow).

The question a study answers is "scratch or transfer?", so the *contenders*
are the scratch arm and the transfer arm(s); a transfer run from a random
backbone next to a pretrained run of the same backbone is its *control*,
which only answers "did the pretrained weights help?" and is never ranked.

:func:`decide` reads each arm's per-image test predictions (the same images in the same order for every
arm) and returns the verdict's sentences and numbers:

* the figure: accuracy, or balanced accuracy when the classes are imbalanced
  (largest/smallest > :data:`~kerasxfer.reporting.stats.IMBALANCE_RATIO`);
* the majority-class baseline, and every arm that does not beat it by more
  than the noise flagged: *did not learn* (at or below it, with the likely
  cause) or *not distinguishable from the baseline* (above it within the
  noise: no evidence either way, with how many test images would tell);
* "X wins" only when the paired test (Holm-corrected over the contender
  pairs when there are more than two contenders) says the difference is
  larger than the noise *and* the paired bootstrap interval of the margin
  excludes 0; otherwise "No clear winner", the cheaper arm (the one recommended), and how many
  test images a difference of the observed size would need; the control's own sentence.

The order of the arms never changes the verdict: contenders are sorted by name, ties are "No clear winner".
"""

from __future__ import annotations

import itertools
import math
from dataclasses import replace

import numpy as np

from kerasxfer.records import Arm, Learned, Pair, Verdict
from kerasxfer.reporting import stats
from kerasxfer.reporting.fit import unfit_clause
from kerasxfer.reporting.stats import NOISE_P
from kerasxfer.reporting.text import pct


def _points(d) -> str:
    return f"{100 * d:+.2f}"


def roles(arms) -> dict:
    """name -> ``"contender"``, ``"control"`` (a random-backbone transfer run beside a pretrained one) or
    ``"reference"`` (a pretrained run of only the frozen phase beside a control: what the control is compared
    with when it, too, trained only the frozen phase; never a contender)."""
    pretrained = {a.backbone for a in arms if a.kind == "transfer" and a.weights}
    controls = {a.backbone for a in arms if a.kind == "transfer" and not a.weights and a.backbone in pretrained}
    out = {}
    for a in arms:
        if a.kind == "transfer" and not a.weights and a.backbone in pretrained:
            out[a.name] = "control"
        elif a.kind == "transfer" and a.weights and a.frozen_only and a.backbone in controls:
            out[a.name] = "reference"
        else:
            out[a.name] = "contender"
    return out


def _compare(a, b, labels, figure, seed) -> Pair:
    """Margin, paired test and interval of ``a`` minus ``b`` on ``figure``."""
    fa = stats.figure_of(labels, a.predictions, figure)
    fb = stats.figure_of(labels, b.predictions, figure)
    test = stats.paired_test(labels, a.predictions, b.predictions, figure, seed)
    lo, hi = stats.paired_interval(labels, a.predictions, b.predictions, figure, seed)
    mcnemar = test if figure == "accuracy" else stats.mcnemar(labels, a.predictions, b.predictions)
    return Pair(
        a=a.name,
        b=b.name,
        figure=figure,
        a_value=fa,
        b_value=fb,
        difference=fa - fb,
        difference_points=100 * (fa - fb),
        interval=(lo, hi),
        test=test,
        p_value=test["p_value"],
        mcnemar=mcnemar,
        agreement=float(np.mean(np.asarray(a.predictions) == np.asarray(b.predictions))),
    )


def _entropy(counts) -> float:
    c = np.asarray([v for v in counts if v > 0], float)
    p = c / c.sum()
    return float(-(p * np.log(p)).sum())


def _learned(arm, labels, figure, base, seed) -> Learned:
    """Whether ``arm`` beats the majority-class predictor by more than the noise, and if not, the likely cause."""
    majority = np.full(len(labels), base.class_index)
    value = stats.figure_of(labels, arm.predictions, figure)
    test = stats.paired_test(labels, arm.predictions, majority, figure, seed)
    learned = value > base.value(figure) and test["p_value"] < NOISE_P
    out = Learned(learned=bool(learned), value=value, baseline=base.value(figure), p_value=test["p_value"])
    if learned:
        return out
    if value > base.value(figure):  # above the baseline, but a failure to reject is no evidence of no learning
        y, p = np.asarray(labels), np.asarray(arm.predictions)
        b, c = int(((p == y) & (majority != y)).sum()), int(((p != y) & (majority == y)).sum())
        return replace(out, tag="not distinguishable from the baseline", needed=stats.images_needed(b, c, len(y)))
    return replace(out, tag="did not learn", cause=_cause(arm))


def _unlearned_sentence(a, f, figure: str, n: int, folds: int) -> str:
    """What the test against the majority-class baseline says about an arm that did not pass it."""
    if f.tag == "did not learn":
        return (
            f"**{a.name} did not learn**: its {figure} {pct(f.value)} does not beat the majority-class "
            f"baseline {pct(f.baseline)} (p = {f.p_value:.3g}); likely cause: {f.cause}."
        )
    more = (
        f" about {f.needed:,} test images would show a difference of this size (80 % power)"
        if f.needed and f.needed > n
        else " more test images would tell"
    )
    return (
        f"**{a.name} is not distinguishable from the majority-class baseline on these {n} test images**: "
        f"its {figure} {pct(f.value)} is above the baseline's {pct(f.baseline)}, but not by more than the "
        f"noise (p = {f.p_value:.3g}). That does not show it learned nothing:{more}"
        + ("." if folds else "; --folds tests every labelled image once.")
    )


def _cause(arm) -> str:
    steps, min_steps = arm.optimizer_steps, arm.min_steps_default
    entropy = _entropy(arm.train_counts or [1])
    loss = arm.final_train_loss
    if steps is not None and steps < min_steps:
        return (
            f"it trained for only {steps} optimizer steps: give it more (--min_steps={min_steps} or more epochs; "
            "small sets have few steps per epoch)"
        )
    if loss is not None and entropy > 0 and loss >= 0.9 * entropy:
        return (
            f"its training loss stayed at {loss:.3f}, near the label entropy {entropy:.3f} (what predicting the "
            "class shares scores): the learning rate is likely too low or too high (make lr-find finds one)"
        )
    acc = arm.final_train_accuracy
    fit = f"it fit its training images ({pct(acc)}) " if acc is not None else "it trained "
    return (
        fit + "without learning anything that carries to the test images: the labels may not depend on what "
        "the images show, or there are too few images (add images, or --folds to use every image)"
    )


def _cheaper_sentence(a, b) -> tuple[str, Arm]:
    """Which of two arms within the noise is the sensible choice: the cheaper to train, and the smaller model."""
    train = min((a, b), key=lambda x: (x.train_seconds or math.inf, x.total_params or 0, x.name))
    other = b if train is a else a
    text = f"The cheaper arm to train, **{train.name}**"
    if train.train_seconds and other.train_seconds:
        text += f" ({train.train_seconds:.0f} s of training vs {other.train_seconds:.0f} s)"
    text += ", is the sensible choice"
    if (other.total_params or 0) < (train.total_params or 0):
        text += (
            f"; **{other.name}** is the smaller model ({other.total_params:,} parameters vs "
            f"{train.total_params:,}) if the cost of predicting matters more"
        )
    return text, train


def _label(winner, contenders) -> str:
    kinds = {a.kind for a in contenders}
    if len(kinds) > 1 and winner.kind in ("scratch", "transfer"):
        return winner.kind.capitalize()
    return winner.name


def _mentioned(arm, flags) -> str:
    f = flags[arm.name]
    return f"**{arm.name}** ({arm.model}" + (f", **{f.tag}**" if not f.learned else "") + ")"


def _p_text(pair, corrected: int, alpha: float = NOISE_P) -> str:
    t = pair.test
    name = "McNemar" if pair.figure == "accuracy" else "paired permutation test"
    text = f"{name} p = {pair.p_value:.3g}"
    if corrected > 1:
        text += f", Holm-corrected for {corrected} comparisons (uncorrected {t['p_value']:.3g})"
    if alpha != NOISE_P:
        text += f"; the sequential rule's level at this fold is {alpha:.3g}"
    return text


def _winner_of(contenders, pairs, flags, alpha: float = NOISE_P):
    """The contender that beats every other beyond the noise (adjusted p below ``alpha``, and interval), and
    learned; else None."""
    for w in contenders:
        beats = []
        for p in pairs:
            if w.name not in (p.a, p.b):
                continue
            sign = 1 if p.a == w.name else -1
            lo, hi = (sign * v for v in p.interval)
            beats.append(p.adjusted_p < alpha and sign * p.difference > 0 and min(lo, hi) > 0)
        if beats and all(beats) and flags[w.name].learned:
            return w
    return None


def _headline(contenders, pairs, flags, figure, n, folds, alpha=NOISE_P) -> tuple:
    by_name = {a.name: a for a in contenders}
    ranked = sorted(contenders, key=lambda a: (-flags[a.name].value, a.name))
    winner = _winner_of(contenders, pairs, flags, alpha)
    k = len(pairs)
    if winner is not None:
        others = [a for a in ranked if a is not winner]
        p = next(q for q in pairs if {q.a, q.b} == {winner.name, others[0].name}).oriented(winner.name)
        lo, hi = p.interval
        every = " and every other contender" if len(others) > 1 else ""
        return (
            (
                f"**{_label(winner, contenders)} wins**: {_mentioned(winner, flags)} scores {pct(p.a_value)} "
                f"{figure} on the test images against {pct(p.b_value)} for {_mentioned(others[0], flags)}{every}: "
                f"{_points(p.difference)} points (95 % interval {_points(lo)} to {_points(hi)}) on the same {n} "
                f"test images{folds}, larger than the noise ({_p_text(p, k, alpha)})."
            ),
            winner,
            p,
        )
    a, b = ranked[0], ranked[1]
    p = next(q for q in pairs if {q.a, q.b} == {a.name, b.name}).oriented(a.name)
    lo, hi = p.interval
    text = "**No clear winner**: "
    if not any(flags[name].learned for name in by_name):
        text += "no contender beats the majority-class baseline by more than the noise (see why below); "
    text += (
        f"{_mentioned(a, flags)} scores {pct(p.a_value)} {figure} and "
        f"{_mentioned(b, flags)} {pct(p.b_value)}, a difference of {_points(p.difference)} points "
        f"(95 % interval {_points(lo)} to {_points(hi)}) on the same {n} test images{folds}, within the noise "
        f"({_p_text(p, k, alpha)}). "
    )
    cheaper, cheap = _cheaper_sentence(a, b)
    text += cheaper + ("." if flags[cheap.name].learned else ", once it learns (see below).")
    mc = p.mcnemar
    needed = stats.images_needed(mc["b"], mc["c"], n)
    if needed is None:
        text += " The two score the same here, so more test images of the same kind would not separate them."
    elif needed > n:
        text += f" Seeing a difference of this size would take about {needed:,} test images (McNemar, 80 % power)" + (
            "." if folds else f"; --folds tests every labelled image once instead of {n}."
        )
    return text, None, p


def _contest(contenders, pairs, flags, figure, n, where, alpha) -> tuple:
    """The headline, winner, main pair and the arm the headline recommends: the winner; within the noise, the
    cheaper of the two best once it learned and fit; none when a contender that did not fit decides it."""
    head, winner, main = _headline(contenders, pairs, flags, figure, n, where, alpha)
    unfit = [a for a in contenders if a.fit is not None and a.fit.tag == "underfits"]
    if unfit and winner is not None:  # the comparison would blame an approach for a run that failed to train
        return _unfit_headline(unfit, main, figure, n, where, len(pairs), alpha), None, main, None
    if unfit:
        head += " Beware: " + "; ".join(unfit_clause(a) for a in unfit) + "."
    if winner is not None:
        return head, winner, main, winner.name
    cheap = _cheaper_sentence(*(next(a for a in contenders if a.name == x) for x in (main.a, main.b)))[1]
    return head, None, main, cheap.name if flags[cheap.name].learned and cheap not in unfit else None


def _unfit_headline(unfit, p, figure: str, n: int, where: str, k: int, alpha: float) -> str:
    """The headline when a contender that did not fit its training images would decide it: no winner, what
    failed, then the numbers."""
    lo, hi = p.interval
    return (
        "**No winner named**: "
        + "; ".join(unfit_clause(a) for a in unfit)
        + ", so the difference below would read a training failure as the approach being worse. As trained, "
        f"**{p.a}** scores {pct(p.a_value)} {figure} and **{p.b}** {pct(p.b_value)}, {_points(p.difference)} points "
        f"(95 % interval {_points(lo)} to {_points(hi)}) on the same {n} test images{where} ({_p_text(p, k, alpha)})."
    )


def _best_backbone(contenders, pairs, flags, figure):
    """With several transfer arms: which backbone served best, and whether its lead over the next is beyond noise."""
    transfers = sorted((a for a in contenders if a.kind == "transfer"), key=lambda a: (-flags[a.name].value, a.name))
    if len(transfers) < 2:
        return None
    best, second = transfers[0], transfers[1]
    p = next(q for q in pairs if {q.a, q.b} == {best.name, second.name}).oriented(best.name)
    lo, hi = p.interval
    beyond = p.adjusted_p < NOISE_P and lo > 0
    return (
        f"Of the {len(transfers)} transfer arms, {best.backbone} served best: {_mentioned(best, flags)} scores "
        f"{pct(p.a_value)} {figure} against {pct(p.b_value)} for {_mentioned(second, flags)}, "
        f"{_points(p.difference)} points (95 % interval {_points(lo)} to {_points(hi)}; "
        f"{_p_text(p, len(pairs))}): "
        + ("a lead beyond the noise." if beyond else "within the noise, so either backbone would do.")
    )


def _control_sentence(control, transfer, labels, figure, seed) -> tuple:
    p = _compare(transfer, control, labels, figure, seed)
    lo, hi = p.interval
    what = (
        "ImageNet weights"
        if transfer.weights == "imagenet"
        else f"The pretrained weights ({transfer.weights_source or transfer.weights})"
    )
    real = p.p_value < NOISE_P and (lo > 0 or hi < 0)
    how = ("helped" if p.difference > 0 else "hurt") if real else "did not help beyond the noise"
    design = (
        " (both trained the frozen phase only: the same head on the pretrained and on the random backbone's features)"
        if control.frozen_only and transfer.frozen_only
        else ""
    )
    return (
        f"{what} {how}: **{transfer.name}** scores {pct(p.a_value)} {figure} against {pct(p.b_value)} "
        f"for its random-backbone control **{control.name}**{design}, {_points(p.difference)} points (95 % "
        f"interval {_points(lo)} to {_points(hi)}, {_p_text(p, 1)}); the control is not a contender."
    ), p


def _control_reference(control, arms, role):
    """What a control is compared with: the pretrained frozen-phase run beside a frozen-phase control, else the
    pretrained contender of its backbone."""
    same = [a for a in arms if a.kind == "transfer" and a.backbone == control.backbone and a.weights]
    return next(
        (a for a in same if role[a.name] == "reference" and control.frozen_only),
        next((a for a in same if role[a.name] == "contender"), same[0]),
    )


def _where(folds: int, planned: int) -> str:
    """Where the test predictions come from, for the headline."""
    if folds and planned and planned > folds:
        return f" (out-of-fold over the first {folds} of {planned} folds: the study stopped once it knew)"
    return f" (out-of-fold: every image tested once over {folds} folds)" if folds else ""


def _baseline_sentence(base, cls, n: int, figure: str, ratio: float) -> str:
    text = f"Majority-class baseline: always predicting '{cls}' scores {pct(base.accuracy)} accuracy on the {n} test images."
    if figure == "balanced accuracy":
        return text + (
            f" The classes are imbalanced (largest/smallest = {ratio:.2f}), so the verdict compares balanced "
            f"accuracy (the mean recall over classes; chance = {pct(base.balanced_accuracy)}) and the "
            "table adds macro-F1."
        )
    return text + " The verdict compares accuracy (the classes are balanced within 1.5x)."


def decide(
    arms: list[Arm], labels, class_names, seed: int = 0, folds: int = 0, alpha: float = NOISE_P, planned_folds: int = 0
) -> Verdict:
    """The verdict over ``arms`` tested on ``labels`` (see the module docstring); every sentence and number.

    Each arm is a :class:`kerasxfer.records.Arm` (its ``predictions`` aligned with ``labels``).
    ``folds``: the predictions are out-of-fold over that many folds (0: one test split) of ``planned_folds``;
    ``alpha``: a winner's adjusted p must be below it (:mod:`kerasxfer.reporting.sequential`)."""
    labels = np.asarray(labels)
    n = len(labels)
    arms = sorted(arms, key=lambda a: a.name)
    role = roles(arms)
    ratio = stats.imbalance(labels)
    figure = "balanced accuracy" if ratio > stats.IMBALANCE_RATIO else "accuracy"
    base = stats.majority(labels)
    flags = {a.name: _learned(a, labels, figure, base, seed) for a in arms}
    contenders = [a for a in arms if role[a.name] == "contender"]
    pairs = [_compare(a, b, labels, figure, seed) for a, b in itertools.combinations(contenders, 2)]
    pairs = [replace(pair, adjusted_p=adj) for pair, adj in zip(pairs, stats.holm([p.p_value for p in pairs]))]
    where = _where(folds, planned_folds)
    sentences, winner, main, recommended = [], None, None, None
    if len(contenders) >= 2:
        head, winner, main, recommended = _contest(contenders, pairs, flags, figure, n, where, alpha)
        sentences.append(head)
    else:
        sentences.append(
            "**No verdict**: scratch or transfer needs a scratch run and a transfer run (or two runs of any kind); "
            f"these runs hold {len(contenders)} contender(s) ({', '.join(a.name for a in contenders) or 'none'})."
        )
    best_backbone = _best_backbone(contenders, pairs, flags, figure)
    sentences += [best_backbone] if best_backbone else []
    controls = []
    for c in (a for a in arms if role[a.name] == "control"):
        text, p = _control_sentence(c, _control_reference(c, arms, role), labels, figure, seed)
        sentences.append(text)
        controls.append(p)
    cls = class_names[base.class_index] if base.class_index < len(class_names) else base.class_index
    sentences.append(_baseline_sentence(base, cls, n, figure, ratio))
    sentences += [_unlearned_sentence(a, flags[a.name], figure, n, folds) for a in arms if not flags[a.name].learned]
    return Verdict(
        figure=figure,
        imbalance=ratio,
        baseline=replace(base, class_name=cls),
        roles=role,
        best_backbone=best_backbone,
        winner=winner.name if winner else None,
        recommended=recommended,
        learned=flags,
        pairs=tuple(pairs),
        controls=tuple(controls),
        main_pair=main,
        num_images=n,
        folds=folds,
        alpha=alpha,
        sentences=tuple(sentences),
    )
