"""Greedy and beam search by the rules of transformers' `model.generate`, in numpy.

An image-to-text bundle imported from Hugging Face (`lambdalite import DIR`) has
`options.search: "transformers"`: its captions are then the token sequences that
`model.generate(pixel_values, num_beams=..., max_length=...)` returns, token for token,
given the same logits. The rules, as transformers 5 applies them:

- The decoder starts from `prompt_ids` (the decoder start token, or BLIP's bos and any text
  prompt), fed in one call; `max_length` counts them, so at most `max_length - len(prompt_ids)`
  tokens are generated, the end token included.
- Logits processors, in generate's order: `repetition_penalty`, `no_repeat_ngram_size`,
  `min_length`, `min_new_tokens`, `forced_bos_id`, `forced_eos_id`, `suppress_ids`,
  `begin_suppress_ids`. Greedy search applies them to the logits and takes the argmax; beam
  search applies them to the log-softmax of the logits (so a penalty changes scores, and
  nothing is renormalised).
- Beam search keeps `num_beams` running beams; each step takes the best
  `max(2, 1 + len(eos_ids)) * num_beams` continuations by total log-probability; those among
  the first `num_beams` that end (an end token, or `max_length` reached) become finished
  captions scored `sum of log-probabilities / generated_length ** length_penalty` (the end
  token counted); the best that do not end run on. An image is done when `num_beams` captions
  have finished and its best running beam could not beat the worst of them
  (`early_stopping` false: judged at the current length; `"never"` with a positive length
  penalty: at `max_length`; true: as soon as `num_beams` have finished).

Hypotheses hold the generated tokens (the end token included when the caption ended) and
their score: the beam score above, or for greedy search the mean log-probability per token.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple, Protocol

import numpy as np
import numpy.typing as npt

from lambdalite.errors import BundleError, InputError

__all__ = ["RULE_OPTIONS", "Decoder", "Hypothesis", "Rules", "beam", "greedy", "log_softmax"]

Array = npt.NDArray[Any]
_NEG = -1.0e9  # what transformers adds to rule a candidate out (not -inf: sums stay finite)

# The manifest options these rules read (besides beam_size and max_length), with defaults.
RULE_OPTIONS: dict[str, Any] = {
    "prompt_ids": None,  # required
    "eos_ids": None,  # required (may be empty: never ends before max_length)
    "length_penalty": 1.0,
    "early_stopping": False,
    "min_length": 0,
    "min_new_tokens": 0,
    "repetition_penalty": 1.0,
    "no_repeat_ngram_size": 0,
    "forced_bos_id": None,
    "forced_eos_id": None,
    "suppress_ids": [],
    "begin_suppress_ids": [],
}


class Hypothesis(NamedTuple):
    """One finished caption: its token ids and its score."""

    score: float
    tokens: tuple[int, ...]


class Decoder(Protocol):
    """The decoder as the searches see it: rows of tokens in, next-token logits out.

    `__call__` feeds each row its new tokens ((R, T): the prompt first, then one each) and
    returns (R, V) logits; `keep(rows)` then selects and orders the rows (and their caches)
    that the next call continues."""

    def __call__(self, tokens: Array) -> Array: ...

    def keep(self, rows: Array) -> None: ...


def _ids(value: Any, key: str, vocab: int, *, allow_empty: bool = True) -> tuple[int, ...]:
    if (
        not isinstance(value, list)
        or not all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v < vocab for v in value)
        or (not value and not allow_empty)
    ):
        raise BundleError(
            f"lambdalite.json: options.{key}: expected a list of token ids from 0 to {vocab - 1}"
            f"{'' if allow_empty else ' (at least one)'}, got {value!r}"
        )
    return tuple(value)


def _number(value: Any, key: str, low: float, *, integer: bool = False, above: bool = False) -> Any:
    kinds = (int,) if integer else (int, float)
    ok = isinstance(value, kinds) and not isinstance(value, bool) and (value > low if above else value >= low)
    if not ok or not np.isfinite(value):
        what = "a whole number" if integer else "a number"
        raise BundleError(
            f"lambdalite.json: options.{key}: expected {what} {'>' if above else '>='} {low}, got {value!r}"
        )
    return value


class Rules(NamedTuple):
    """generate's settings for one bundle, validated (see the module docstring)."""

    prompt: tuple[int, ...]
    eos: tuple[int, ...]
    length_penalty: float = 1.0
    early_stopping: bool | str = False
    min_length: int = 0
    min_new_tokens: int = 0
    repetition_penalty: float = 1.0
    no_repeat_ngram_size: int = 0
    forced_bos: int | None = None
    forced_eos: tuple[int, ...] = ()
    suppress: tuple[int, ...] = ()
    begin_suppress: tuple[int, ...] = ()

    @classmethod
    def from_options(cls, options: Mapping[str, Any], vocab: int) -> Rules:
        o = {**RULE_OPTIONS, **{k: v for k, v in options.items() if k in RULE_OPTIONS}}
        if o["prompt_ids"] is None or o["eos_ids"] is None:
            missing = "prompt_ids" if o["prompt_ids"] is None else "eos_ids"
            raise BundleError(f"lambdalite.json: options.{missing}: missing (search 'transformers' needs it)")
        early = o["early_stopping"]
        if early not in (True, False, "never"):
            raise BundleError(
                f"lambdalite.json: options.early_stopping: expected true, false or 'never', got {early!r}"
            )
        forced_eos = o["forced_eos_id"]
        if forced_eos is not None and not isinstance(forced_eos, list):
            forced_eos = [forced_eos]
        forced_bos = o["forced_bos_id"]
        if forced_bos is not None:
            forced_bos = _ids([forced_bos], "forced_bos_id", vocab)[0]
        return cls(
            prompt=_ids(o["prompt_ids"], "prompt_ids", vocab, allow_empty=False),
            eos=_ids(o["eos_ids"], "eos_ids", vocab),
            length_penalty=float(_number(o["length_penalty"], "length_penalty", -1e6)),
            early_stopping=early,
            min_length=_number(o["min_length"], "min_length", 0, integer=True),
            min_new_tokens=_number(o["min_new_tokens"], "min_new_tokens", 0, integer=True),
            repetition_penalty=float(_number(o["repetition_penalty"], "repetition_penalty", 0, above=True)),
            no_repeat_ngram_size=_number(o["no_repeat_ngram_size"], "no_repeat_ngram_size", 0, integer=True),
            forced_bos=forced_bos,
            forced_eos=() if forced_eos is None else _ids(forced_eos, "forced_eos_id", vocab),
            suppress=_ids(o["suppress_ids"], "suppress_ids", vocab),
            begin_suppress=_ids(o["begin_suppress_ids"], "begin_suppress_ids", vocab),
        )

    def process(self, scores: Array, seqs: Array, max_length: int) -> Array:
        """generate's logits processors on (R, V) scores (changed in place), given each row's
        sequence so far, prompt included ((R, cur_len))."""
        cur_len = seqs.shape[1]
        rows = np.arange(len(scores))[:, None]
        if self.repetition_penalty != 1.0:
            seen = scores[rows, seqs]
            scores[rows, seqs] = np.where(seen < 0, seen * self.repetition_penalty, seen / self.repetition_penalty)
        n = self.no_repeat_ngram_size
        if n and cur_len >= n:
            windows = np.lib.stride_tricks.sliding_window_view(seqs, n, axis=1)  # (R, cur_len - n + 1, n)
            match = (windows[:, :, :-1] == seqs[:, cur_len + 1 - n :][:, None, :]).all(axis=2)
            r, w = np.nonzero(match)
            scores[r, windows[r, w, -1]] = -np.inf
        if self.eos and (cur_len < self.min_length or cur_len - len(self.prompt) < self.min_new_tokens):
            scores[:, list(self.eos)] = -np.inf
        if self.forced_bos is not None and cur_len == 1:
            scores[:] = -np.inf
            scores[:, self.forced_bos] = 0
        if self.forced_eos and cur_len == max_length - 1:
            scores[:] = -np.inf
            scores[:, list(self.forced_eos)] = 0
        if self.suppress:
            scores[:, list(self.suppress)] = -np.inf
        if self.begin_suppress and cur_len == self._begin_index():
            scores[:, list(self.begin_suppress)] = -np.inf
        return scores

    def _begin_index(self) -> int:
        p = len(self.prompt)
        return p if p > 1 or self.forced_bos is None else p + 1


def log_softmax(logits: Array) -> npt.NDArray[np.float64]:
    x = logits.astype(np.float64).reshape(logits.shape[0], -1)
    x -= x.max(axis=1, keepdims=True)
    x -= np.log(np.exp(x).sum(axis=1, keepdims=True))
    return x


def _check_length(rules: Rules, max_length: int) -> None:
    if max_length <= len(rules.prompt):
        raise InputError(
            f"max_length must be more than the {len(rules.prompt)} prompt token(s) it counts, not {max_length}"
        )


def greedy(decoder: Decoder, n: int, rules: Rules, max_length: int) -> list[list[Hypothesis]]:
    """generate's greedy search for n images: per image one hypothesis, scored by its mean
    log-probability per generated token."""
    _check_length(rules, max_length)
    p = len(rules.prompt)
    seqs = np.empty((n, max_length), np.int64)
    seqs[:, :p] = rules.prompt
    image = np.arange(n)  # the image each live row belongs to
    total = np.zeros(n)
    eos = np.array(rules.eos, np.int64)
    done: list[list[Hypothesis]] = [[] for _ in range(n)]
    tokens = seqs[:, :p]
    for t in range(p, max_length):
        logits = decoder(tokens)
        logp = log_softmax(logits)
        scores = rules.process(logits.astype(np.float64).reshape(len(image), -1), seqs[:, :t], max_length)
        choice = scores.argmax(axis=1)
        total[image] += logp[np.arange(len(image)), choice]
        seqs[:, t] = choice
        ended = np.isin(choice, eos) | (t + 1 >= max_length)
        for row in np.flatnonzero(ended).tolist():
            i = int(image[row])
            done[i] = [Hypothesis(float(total[i] / (t + 1 - p)), tuple(seqs[row, p : t + 1].tolist()))]
        if ended.all():
            break
        if ended.any():
            keep = np.flatnonzero(~ended)
            decoder.keep(keep)
            image, seqs = image[keep], seqs[keep]
        tokens = seqs[:, t : t + 1]
    return done


def beam(decoder: Decoder, n: int, k: int, rules: Rules, max_length: int) -> list[list[Hypothesis]]:
    """generate's beam search for n images with k beams: per image up to k hypotheses, best first.

    Rows are (image, beam) pairs, image-major; the decoder sees k copies of each image."""
    _check_length(rules, max_length)
    p = len(rules.prompt)
    lp = rules.length_penalty
    width = max(2, 1 + len(rules.eos)) * k
    eos = np.array(rules.eos, np.int64)
    live = np.arange(n)  # the images still searching
    seqs = np.empty((n, k, max_length), np.int64)
    seqs[:, :, :p] = rules.prompt
    scores = np.full((n, k), _NEG)
    scores[:, 0] = 0.0  # only the first copy competes, so the first step yields k distinct beams
    finished: list[list[Hypothesis]] = [[] for _ in range(n)]
    tokens = seqs[:, :, :p].reshape(n * k, p)
    for t in range(p, max_length):
        logp = log_softmax(decoder(tokens))
        logp = rules.process(logp, seqs[:, :, :t].reshape(len(live) * k, t), max_length)
        vocab = logp.shape[1]
        flat = (logp.reshape(len(live), k, vocab) + scores[:, :, None]).reshape(len(live), k * vocab)
        w = min(width, flat.shape[1])
        top = np.argpartition(-flat, w - 1, axis=1)[:, :w]
        top_scores = np.take_along_axis(flat, top, axis=1)
        order = np.argsort(-top_scores, axis=1, kind="stable")
        top, top_scores = np.take_along_axis(top, order, axis=1), np.take_along_axis(top_scores, order, axis=1)
        beam_of, token = top // vocab, top % vocab
        hits = np.isin(token, eos) | (t + 1 >= max_length)
        # Candidates among the first k that end become finished captions; each image keeps its k best.
        denominator = float(t + 1 - p) ** lp
        for i, j in np.argwhere(hits[:, :k]).tolist():
            found = finished[live[i]]
            caption = (*seqs[i, beam_of[i, j], p:t].tolist(), int(token[i, j]))
            found.append(Hypothesis(float(top_scores[i, j] / denominator), caption))
            found.sort(key=lambda h: -h.score)
            del found[k:]
        if t + 1 >= max_length:
            break
        # The k best candidates that do not end run on.
        carry = np.argsort(-(top_scores + hits * _NEG), axis=1, kind="stable")[:, :k]
        beam_of = np.take_along_axis(beam_of, carry, axis=1)
        token = np.take_along_axis(token, carry, axis=1)
        scores = np.take_along_axis(top_scores + hits * _NEG, carry, axis=1)
        seqs = np.take_along_axis(seqs, beam_of[:, :, None], axis=1)
        seqs[:, :, t] = token
        keep = np.array(
            [not _done(finished[img], scores[i, 0], t + 1, k, rules, max_length) for i, img in enumerate(live)]
        )
        if not keep.any():
            break
        rows = (np.arange(len(live))[:, None] * k + beam_of)[keep].ravel()
        decoder.keep(rows)
        live, scores, seqs = live[keep], scores[keep], seqs[keep]
        tokens = seqs[:, :, t].reshape(-1, 1)
    return [h[:k] for h in finished]


def _done(
    found: Sequence[Hypothesis], best_running: float, cur_len: int, k: int, rules: Rules, max_length: int
) -> bool:
    """Whether an image's search is over (generate's stopping rule, after the step to cur_len)."""
    if len(found) < k:
        return False
    if rules.early_stopping is True:
        return True
    p = len(rules.prompt)
    length = max_length - p if rules.early_stopping == "never" and rules.length_penalty > 0 else cur_len - p
    return not best_running / float(length) ** rules.length_penalty > found[-1].score
