"""Image to text: the encoder once per image, the decoder step once per token, greedy or beam search.

    task.predict([jpeg], beam_size=3, max_length=20)
    # [{"caption": "a red circle", "score": -0.012,
    #   "alternatives": [{"caption": "a red circle", "score": -0.012}, ...]}]

**The bundle** (`files`: `encoder`, `decoder`, `vocab`):

- `encoder`: the preprocessed image batch (input named by `input.name`, else its first input)
  to any outputs, for example `features` (N, L, D) for attention and an initial state `h`.
- `decoder`: one step of generation for a batch of B rows (images x beams), called once per
  token. Its inputs are the previous token (its one integer input, shape (B,)) and named
  arrays of two kinds, told apart by name:
  *state*, an input `x` with an output `next_x`: fed back each step (gathered by beam), and
  starting from the encoder's output `x` if it has one, else zeros (dynamic axes other than
  the batch start empty, as a growing cache does);
  *context*, any other input: the encoder's output of that name, constant while decoding.
  Its output `logits` (or `output.name`), (B, V), scores the next token; `output.kind`
  `probabilities` means it gives probabilities instead. Other outputs are ignored.
- `vocab`: one token per line, the line number being the token id.

`options` in the manifest: `beam_size` (default 1) and `max_length` (default 20) are the
defaults per request; `beam_size_limit` (16) and `max_length_limit` (128) bound what a
request may ask; `start_token` (`<start>`) and `end_token` (`<end>`) name the special tokens;
`suppress_tokens` (default: the start token and `<pad>`) are never generated.

**The score** of a caption is its mean log-probability per generated token, the end token
included: `(log p(w1) + ... + log p(wn) + log p(<end>)) / (n + 1)`, so it is at most 0 and
`exp(score)` is the geometric-mean probability of its tokens. Beam search keeps the
`beam_size` best partial captions by total log-probability, collects those that end, ranks
them by the score, and stops an image once `beam_size` captions have ended and its best
unfinished one, scored as if it ended now, would not rank among them (Hugging Face's default
rule), or at `max_length` tokens, where the remaining beams end, scored with `log p(<end>)`.
`beam_size` 1 is greedy search. With `beam_size` > 1 the result also lists every ended caption
kept, best first, under `alternatives` (the first is the caption itself).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from lambdalite.core.bundle import Bundle, DecoderSpec
from lambdalite.core.images import DEFAULT_LIMITS, DecodeLimits, Preprocessor
from lambdalite.engines import Engine, TensorInfo, load_engine
from lambdalite.errors import BundleError, EngineError, InputError
from lambdalite.tasks import generation
from lambdalite.tasks.base import Capabilities, Preprocess
from lambdalite.tasks.generation import RULE_OPTIONS, Hypothesis, Rules

__all__ = ["OPTIONS", "Captioner", "Hypothesis", "load"]  # Hypothesis: from .generation

OPTIONS = ("beam_size", "max_length")
_MANIFEST_OPTIONS = {
    "beam_size": 1,
    "max_length": 20,
    "beam_size_limit": 16,
    "max_length_limit": 128,
    "start_token": "<start>",
    "end_token": "<end>",
    "suppress_tokens": None,
}
_LAMBDALITE_ONLY = ("start_token", "end_token", "suppress_tokens")
_SEARCHES = ("lambdalite", "transformers")
_NO_SPACE_BEFORE = frozenset({",", ".", ";", ":", "!", "?", "'s"})
_INT_DTYPES = ("int64", "int32")
_FLOAT_DTYPES = ("float32", "float16", "float64")

Array = npt.NDArray[Any]


class _DecoderSpec(NamedTuple):
    token: str
    token_dtype: str
    states: tuple[tuple[str, int], ...]  # (input name, index of its next_ output)
    context: tuple[str, ...]
    logits: int  # output index
    token_rank: int = 1  # 2: the tokens are (B, T), as a decoder with a key/value cache takes them
    past: bool = False  # the states are a cache (they start empty, never from the encoder)


def _decoder_spec(encoder: Engine, decoder: Engine, logits_name: str | None, name: str) -> _DecoderSpec:
    tokens = [i for i in decoder.inputs if i.dtype in _INT_DTYPES]
    if len(tokens) != 1:
        raise BundleError(
            f"bundle {name}: the decoder needs exactly one integer input (the previous token); "
            f"it has {len(tokens)}: {', '.join(i.name for i in tokens) or 'none'}"
        )
    token = tokens[0]
    if token.shape and token.shape[0] != -1:
        raise BundleError(
            f"bundle {name}: the decoder's batch axis is fixed at {token.shape[0]}; export it with a dynamic "
            f"batch axis (beams and images run as one batch)"
        )
    out_names = [o.name for o in decoder.outputs]
    enc_names = {o.name for o in encoder.outputs}
    states, context = [], []
    for i in decoder.inputs:
        if i.name == token.name:
            continue
        if f"next_{i.name}" in out_names:
            states.append((i.name, out_names.index(f"next_{i.name}")))
        elif i.name in enc_names:
            context.append(i.name)
        else:
            raise BundleError(
                f"bundle {name}: decoder input {i.name!r} is neither a state (no decoder output "
                f"'next_{i.name}') nor an encoder output (the encoder gives {', '.join(sorted(enc_names))})"
            )
    wanted = logits_name or "logits"
    if wanted not in out_names:
        raise BundleError(
            f"bundle {name}: the decoder has no output {wanted!r} for the next token's scores "
            f"(it has {', '.join(out_names)}); name it in output.name"
        )
    return _DecoderSpec(token.name, token.dtype, tuple(states), tuple(context), out_names.index(wanted))


def _past_spec(encoder: Engine, decoder: Engine, spec: DecoderSpec, name: str) -> _DecoderSpec:
    """The decoder's inputs and outputs as the manifest's `decoder` section names them, checked
    against the models: every decoder input is the tokens, a cache or a context, each exactly once."""
    ins: dict[str, TensorInfo] = {i.name: i for i in decoder.inputs}
    outs = [o.name for o in decoder.outputs]
    enc_names = {o.name for o in encoder.outputs}

    def fail(problem: str) -> BundleError:
        return BundleError(f"bundle {name}: lambdalite.json: decoder: {problem}")

    token = ins.get(spec.tokens)
    if token is None or token.dtype not in _INT_DTYPES or len(token.shape) != 2:
        raise fail(
            f"tokens: the decoder has no integer (batch, tokens) input {spec.tokens!r} "
            f"(its inputs: {', '.join(f'{i.name} {i.dtype}{list(i.shape)}' for i in decoder.inputs)})"
        )
    if token.shape[0] != -1:
        raise fail(f"tokens: the batch axis of {spec.tokens!r} is fixed at {token.shape[0]}; export it dynamic")
    if spec.logits not in outs:
        raise fail(f"logits: the decoder has no output {spec.logits!r} (it has {', '.join(outs)})")
    states = []
    for inp, out in spec.past:
        info = ins.get(inp)
        if info is None:
            raise fail(f"past: the decoder has no input {inp!r}")
        if out not in outs:
            raise fail(f"past: the decoder has no output {out!r} (the cache {inp!r} grown)")
        if info.dtype not in _FLOAT_DTYPES or len(info.shape) <= spec.past_axis:
            raise fail(
                f"past: {inp!r} ({info.dtype}{list(info.shape)}) is not a float cache with an axis {spec.past_axis}"
            )
        fixed = [d for axis, d in enumerate(info.shape) if axis not in (0, spec.past_axis)]
        if any(d <= 0 for d in fixed) or info.shape[0] != -1:
            raise fail(
                f"past: {inp!r} has shape {list(info.shape)}; only its batch axis (0) and the past axis "
                f"({spec.past_axis}) may be dynamic, so an empty cache can be made for the first step"
            )
        states.append((inp, outs.index(out)))
    for c in spec.context:
        if c not in ins:
            raise fail(f"context: the decoder has no input {c!r}")
        if c not in enc_names:
            raise fail(f"context: the encoder has no output {c!r} (it gives {', '.join(sorted(enc_names))})")
    covered = {spec.tokens, *(i for i, _ in spec.past), *spec.context}
    extra = [i for i in ins if i not in covered]
    if extra:
        raise fail(f"the decoder input {extra[0]!r} is not named as tokens, past or context")
    return _DecoderSpec(
        spec.tokens, token.dtype, tuple(states), spec.context, outs.index(spec.logits), token_rank=2, past=True
    )


def _whole(options: Mapping[str, Any], key: str, low: int, high: int) -> int:
    value = options[key]
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise BundleError(
            f"lambdalite.json: options.{key}: expected a whole number from {low} to {high}, got {value!r}"
        )
    return value


class Captioner:
    """An `image-to-text` bundle loaded: its two engines, its vocabulary, its validated options."""

    kind = "image-to-text"
    capabilities = Capabilities()  # two models and a search: no single engine to feed tensors to

    def __init__(
        self,
        bundle: Bundle,
        encoder: Engine,
        decoder: Engine,
        vocab: list[str],
        *,
        limits: DecodeLimits = DEFAULT_LIMITS,
        preprocess: Preprocess | None = None,
    ) -> None:
        self.bundle = bundle
        self.encoder = encoder
        self.decoder = decoder
        self.vocab = vocab
        m = bundle.manifest
        search = m.options.get("search", "lambdalite")
        if search not in _SEARCHES:
            raise BundleError(
                f"lambdalite.json: options.search: expected one of {', '.join(_SEARCHES)}, got {search!r}"
            )
        known = {*_MANIFEST_OPTIONS, "search", "text", *(RULE_OPTIONS if search == "transformers" else ())}
        if search == "transformers":
            known -= set(_LAMBDALITE_ONLY)
        unknown = sorted(set(m.options) - known)
        if unknown:
            raise BundleError(
                f"lambdalite.json: options.{unknown[0]}: unknown key for image-to-text with search {search!r} "
                f"(known: {', '.join(sorted(known))})"
            )
        opts = {**_MANIFEST_OPTIONS, **m.options}
        self.beam_size_limit = _whole(opts, "beam_size_limit", 1, 256)
        self.max_length_limit = _whole(opts, "max_length_limit", 1, 4096)
        self.default_beam_size = _whole(opts, "beam_size", 1, self.beam_size_limit)
        self.default_max_length = _whole(opts, "max_length", 1, self.max_length_limit)
        self.rules: Rules | None = None
        self.prompt: tuple[int, ...] = ()
        if search == "transformers":
            self.rules = Rules.from_options(m.options, len(vocab))
            self.prompt = self.rules.prompt
            self.start = self.end = -1  # the rules name their own tokens
            self.suppress = np.zeros(0, np.int64)
            if self.default_max_length <= len(self.prompt):
                raise BundleError(
                    f"lambdalite.json: options.max_length: {self.default_max_length} leaves no room after the "
                    f"{len(self.prompt)} prompt token(s) it counts"
                )
        else:
            ids = {token: i for i, token in reversed(list(enumerate(vocab)))}
            self.start, self.end = (self._token_id(ids, opts, key) for key in ("start_token", "end_token"))
            suppress = opts["suppress_tokens"]
            if suppress is None:
                suppress = [opts["start_token"], *(["<pad>"] if "<pad>" in ids else [])]
            if not isinstance(suppress, list) or not all(isinstance(t, str) and t in ids for t in suppress):
                raise BundleError(
                    "lambdalite.json: options.suppress_tokens: expected a list of tokens in the vocabulary, "
                    f"got {suppress!r}"
                )
            self.suppress = np.array(sorted({ids[t] for t in suppress} - {self.end}), np.int64)
        self.detokenize: Callable[[Sequence[int]], str] | None = None
        if "text" in m.options:
            from lambdalite.tasks.detokenize import Detokenizer

            self.detokenize = Detokenizer(vocab, m.options["text"])
        spec = m.input
        self.preprocess: Preprocess = preprocess or Preprocessor.from_spec(spec, limits)
        self.input_name = spec.name or encoder.inputs[0].name
        if self.input_name not in {i.name for i in encoder.inputs}:
            raise BundleError(f"lambdalite.json: input.name: the encoder has no input {self.input_name!r}")
        batch_dim = next((i.shape[0] for i in encoder.inputs if i.name == self.input_name and i.shape), -1)
        self.max_encoder_batch = None if batch_dim in (-1, 0) else batch_dim
        if m.decoder is not None:
            self.spec = _past_spec(encoder, decoder, m.decoder, m.name)
        else:
            self.spec = _decoder_spec(encoder, decoder, m.output.name, m.name)
        if self.prompt and len(self.prompt) > 1 and self.spec.token_rank == 1:
            raise BundleError(
                f"bundle {m.name}: options.prompt_ids has {len(self.prompt)} tokens but the decoder takes one "
                f"token per call; give it a (batch, tokens) input and a decoder section"
            )
        self.scores_are_probabilities = m.output.kind == "probabilities"
        out = decoder.outputs[self.spec.logits]
        if out.shape and out.shape[-1] > 0 and out.shape[-1] != len(vocab):
            raise BundleError(
                f"bundle {m.name}: the decoder scores {out.shape[-1]} tokens but "
                f"{m.files['vocab'].path} lists {len(vocab)}"
            )

    def _token_id(self, ids: Mapping[str, int], opts: Mapping[str, Any], key: str) -> int:
        token = opts[key]
        if token not in ids:
            raise BundleError(
                f"lambdalite.json: options.{key}: {token!r} is not in {self.bundle.manifest.files['vocab'].path}"
            )
        return ids[token]

    # -- requests -------------------------------------------------------------------------------

    def predict(self, images: Sequence[bytes], **options: Any) -> list[dict[str, Any]]:
        if not images:
            raise InputError("no images to caption")
        beam_size, max_length = self.options(options)
        batch = np.stack([self.preprocess(data) for data in images])
        return [self.result(hyps, beam_size) for hyps in self.generate(batch, beam_size, max_length)]

    def options(self, options: Mapping[str, Any]) -> tuple[int, int]:
        """Validated (beam_size, max_length) from a request's options; None means the default."""
        unknown = sorted(k for k, v in options.items() if k not in OPTIONS and v is not None)
        if unknown:
            raise InputError(f"unknown option {unknown[0]!r} for image-to-text (options: {', '.join(OPTIONS)})")
        beam_size = options.get("beam_size")
        max_length = options.get("max_length")
        beam_size = self.default_beam_size if beam_size is None else beam_size
        max_length = self.default_max_length if max_length is None else max_length
        for key, value, limit in (
            ("beam_size", beam_size, self.beam_size_limit),
            ("max_length", max_length, self.max_length_limit),
        ):
            if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= limit:
                raise InputError(f"{key} must be a whole number from 1 to {limit}, not {value!r}")
        return beam_size, max_length

    def result(self, hypotheses: list[Hypothesis], beam_size: int) -> dict[str, Any]:
        best = hypotheses[0]
        out: dict[str, Any] = {"caption": self.text(best.tokens), "score": best.score}
        if beam_size > 1:
            out["alternatives"] = [{"caption": self.text(h.tokens), "score": h.score} for h in hypotheses]
        return out

    def text(self, tokens: Sequence[int]) -> str:
        if self.detokenize is not None:
            return self.detokenize([*self.prompt, *tokens])
        words: list[str] = []
        for t in tokens:
            word = self.vocab[t]
            if words and word in _NO_SPACE_BEFORE:
                words[-1] += word
            else:
                words.append(word)
        return " ".join(words)

    def warmup(self) -> None:
        h, w = self.bundle.manifest.input.size
        shape = (1, 3, h, w) if self.bundle.manifest.input.layout == "NCHW" else (1, h, w, 3)
        dtype = {"float32": np.float32, "uint8": np.uint8, "int8": np.int8}[self.bundle.manifest.input.dtype]
        try:
            self.generate(np.zeros(shape, dtype), beam_size=1, max_length=len(self.prompt) + 2)
        except EngineError as exc:
            raise BundleError(
                f"bundle {self.bundle.manifest.name}: the encoder and decoder do not run on the input the "
                f"manifest describes ({shape}, {dtype.__name__}): {exc}"
            ) from exc

    # -- decoding ---------------------------------------------------------------------------------

    def encode(self, batch: Array) -> dict[str, Array]:
        """The encoder's outputs by name, for a preprocessed batch (run in pieces if its batch is fixed)."""
        names = [o.name for o in self.encoder.outputs]
        step = self.max_encoder_batch or batch.shape[0]
        parts = [self.encoder.run({self.input_name: batch[i : i + step]}) for i in range(0, batch.shape[0], step)]
        if len(parts) == 1:
            return dict(zip(names, parts[0], strict=True))
        return {name: np.concatenate([p[j] for p in parts]) for j, name in enumerate(names)}

    def generate(self, batch: Array, beam_size: int, max_length: int) -> list[list[Hypothesis]]:
        """Captions for a preprocessed batch: per image, up to `beam_size` hypotheses, best first."""
        encoded = self.encode(batch)
        n = batch.shape[0]
        context = {name: encoded[name] for name in self.spec.context}
        states = {name: self._initial_state(name, encoded, n) for name, _ in self.spec.states}
        if self.rules is not None:
            if beam_size == 1:
                return generation.greedy(_Rows(self, context, states, 1), n, self.rules, max_length)
            context = {name: np.repeat(v, beam_size, axis=0) for name, v in context.items()}
            states = {name: np.repeat(v, beam_size, axis=0) for name, v in states.items()}
            rows = _Rows(self, context, states, beam_size)
            return generation.beam(rows, n, beam_size, self.rules, max_length)
        if beam_size == 1:
            return self._greedy(context, states, n, max_length)
        return self._beam(context, states, n, beam_size, max_length)

    def _initial_state(self, name: str, encoded: Mapping[str, Array], n: int) -> Array:
        if name in encoded and not self.spec.past:
            return encoded[name]
        info = next(i for i in self.decoder.inputs if i.name == name)
        shape = (n, *(max(d, 0) for d in info.shape[1:]))  # dynamic axes start empty
        return np.zeros(shape, np.dtype(info.dtype))

    def _step(self, tokens: Array, context: Mapping[str, Array], states: Mapping[str, Array]) -> list[Array]:
        if self.spec.token_rank == 2 and tokens.ndim == 1:
            tokens = tokens[:, None]
        tokens = np.ascontiguousarray(tokens, self.spec.token_dtype)
        outputs = self.decoder.run({self.spec.token: tokens, **context, **states})
        logits = outputs[self.spec.logits]
        if logits.ndim == 3:  # (B, T, V): the scores after the last token
            outputs[self.spec.logits] = logits[:, -1]
        return outputs

    def _log_probs(self, raw: Array) -> npt.NDArray[np.float64]:
        """Next-token log-probabilities (rows, V), suppressed tokens at -inf."""
        x = raw.astype(np.float64).reshape(raw.shape[0], -1)
        if self.scores_are_probabilities:
            x = np.log(np.maximum(x, 1e-300))  # a zero stays finite, so every row can still end
        x[:, self.suppress] = -np.inf
        x -= x.max(axis=1, keepdims=True)
        x -= np.log(np.exp(x).sum(axis=1, keepdims=True))
        return x

    def _next_states(self, outputs: list[Array], rows: Array | None, buffers: dict[str, Array]) -> dict[str, Array]:
        """The decoder's new states for the rows that go on (all of them, uncopied, when rows is None).

        Rows are gathered into a buffer kept across steps (a view of its first rows), so a beam
        search allocates its states once rather than once per token."""
        if rows is None:
            return {name: outputs[index] for name, index in self.spec.states}
        out = {}
        for name, index in self.spec.states:
            value = outputs[index]
            buf = buffers.get(name)
            reusable = (
                buf is not None
                and buf.shape[1:] == value.shape[1:]
                and buf.dtype == value.dtype
                and len(buf) >= len(rows)
                and not np.may_share_memory(buf, value)  # an engine may hand an input back as an output
            )
            if buf is None or not reusable:
                buf = buffers[name] = np.empty((len(rows), *value.shape[1:]), value.dtype)
            # mode="clip": the rows are valid by construction, and "raise" would copy through a temporary.
            out[name] = np.take(value, rows, axis=0, out=buf[: len(rows)], mode="clip")
        return out

    def _greedy(
        self, context: dict[str, Array], states: dict[str, Array], n: int, max_length: int
    ) -> list[list[Hypothesis]]:
        image = np.arange(n)  # the image each live row belongs to
        tokens = np.full(n, self.start, np.dtype(self.spec.token_dtype))
        total = np.zeros(n)
        words = np.zeros((n, max_length), np.int64)
        done: list[list[Hypothesis]] = [[] for _ in range(n)]
        buffers: dict[str, Array] = {}
        for t in range(max_length + 1):
            outputs = self._step(tokens, context, states)
            logp = self._log_probs(outputs[self.spec.logits])
            choice = np.full(len(image), self.end) if t == max_length else logp.argmax(axis=1)
            total[image] += logp[np.arange(len(image)), choice]
            ended = choice == self.end
            words[image[~ended], min(t, max_length - 1)] = choice[~ended]
            for i in image[ended].tolist():
                done[i] = [Hypothesis(float(total[i] / (t + 1)), tuple(words[i, :t].tolist()))]
            if ended.all():
                break
            keep = None
            if ended.any():
                keep = np.flatnonzero(~ended)
                image = image[keep]
                context = {k: np.take(v, keep, axis=0) for k, v in context.items()}
            states = self._next_states(outputs, keep, buffers)
            tokens = choice[~ended].astype(tokens.dtype)
        return done

    @staticmethod
    def _done(finished: list[Hypothesis], best_live: float, k: int) -> bool:
        """Whether an image can stop: k captions have ended and its best live beam, scored as if
        it ended now, would not rank among them (Hugging Face's default stopping rule)."""
        if len(finished) < k:
            return False
        finished.sort(key=lambda h: -h.score)
        del finished[k:]
        return best_live <= finished[-1].score

    def _beam(
        self, context: dict[str, Array], states: dict[str, Array], n: int, k: int, max_length: int
    ) -> list[list[Hypothesis]]:
        # Rows are (image, beam) pairs, image-major; every image starts with k copies of its one beam.
        context = {name: np.repeat(v, k, axis=0) for name, v in context.items()}
        states = {name: np.repeat(v, k, axis=0) for name, v in states.items()}
        live = np.arange(n)  # the images still decoding
        scores = np.full((n, k), -np.inf)
        scores[:, 0] = 0.0  # only the first copy competes, so the first step yields k distinct beams
        tokens = np.full(n * k, self.start, np.dtype(self.spec.token_dtype))
        seqs = np.zeros((n, k, max_length), np.int64)
        finished: list[list[Hypothesis]] = [[] for _ in range(n)]
        buffers: dict[str, Array] = {}
        for t in range(max_length + 1):
            outputs = self._step(tokens, context, states)
            logp = self._log_probs(outputs[self.spec.logits]).reshape(len(live), k, -1)
            vocab = logp.shape[2]
            if t == max_length:  # out of room: every live beam ends here
                final = (scores + logp[:, :, self.end]) / (t + 1)
                for i, b in np.argwhere(np.isfinite(final)).tolist():
                    finished[live[i]].append(Hypothesis(float(final[i, b]), tuple(seqs[i, b, :t].tolist())))
                break
            flat = (scores[:, :, None] + logp).reshape(len(live), k * vocab)
            width = min(2 * k, flat.shape[1])
            top = np.argpartition(-flat, width - 1, axis=1)[:, :width]
            top_scores = np.take_along_axis(flat, top, axis=1)
            order = np.argsort(-top_scores, axis=1, kind="stable")
            top, top_scores = np.take_along_axis(top, order, axis=1), np.take_along_axis(top_scores, order, axis=1)
            beam, token = top // vocab, top % vocab
            is_end = token == self.end
            # An ending candidate counts only if it ranks among the k best (as in Hugging Face's BeamSearchScorer).
            for i, j in np.argwhere(is_end[:, :k] & np.isfinite(top_scores[:, :k])).tolist():
                caption = tuple(seqs[i, beam[i, j], :t].tolist())
                finished[live[i]].append(Hypothesis(float(top_scores[i, j] / (t + 1)), caption))
            # The k best candidates that do not end carry on (at most k of the 2k end, so there are k).
            carry = np.argsort(is_end, axis=1, kind="stable")[:, :k]
            beam = np.take_along_axis(beam, carry, axis=1)
            token = np.take_along_axis(token, carry, axis=1)
            scores = np.take_along_axis(top_scores, carry, axis=1)
            keep = np.array([not self._done(finished[img], scores[i, 0] / (t + 1), k) for i, img in enumerate(live)])
            if not keep.any():
                break
            rows = (np.arange(len(live))[:, None] * k + beam)[keep].ravel()
            if not keep.all():
                kept_rows = (np.flatnonzero(keep)[:, None] * k + np.arange(k)).ravel()
                context = {name: np.take(v, kept_rows, axis=0) for name, v in context.items()}
                live, scores, beam, token, seqs = live[keep], scores[keep], beam[keep], token[keep], seqs[keep]
            seqs = np.take_along_axis(seqs, beam[:, :, None], axis=1)
            seqs[:, :, t] = token
            states = self._next_states(outputs, rows, buffers)
            tokens = token.ravel().astype(tokens.dtype)
        return [sorted(h, key=lambda x: -x.score)[:k] for h in finished]


class _Rows:
    """One search's decoder rows (`generation.Decoder`): their context and cache, kept in step.

    Rows come in groups of `group` (an image's beams), which share one context: it is copied
    only when images leave the search, never when beams are merely reordered."""

    def __init__(self, captioner: Captioner, context: dict[str, Array], states: dict[str, Array], group: int) -> None:
        self.captioner = captioner
        self.context = context
        self.states = states
        self.group = group
        self.outputs: list[Array] = []
        self.buffers: dict[str, Array] = {}

    def __call__(self, tokens: Array) -> Array:
        self.outputs = self.captioner._step(tokens, self.context, self.states)
        self.states = self.captioner._next_states(self.outputs, None, self.buffers)
        return self.outputs[self.captioner.spec.logits]

    def keep(self, rows: Array) -> None:
        count = len(self.outputs[self.captioner.spec.logits])
        if len(rows) != count:  # images left: their context goes (each kept row's image's context)
            self.context = {k: np.take(v, rows, axis=0) for k, v in self.context.items()}
        elif np.array_equal(rows, np.arange(count)):
            return  # every row goes on as it is: the states are the outputs already
        self.states = self.captioner._next_states(self.outputs, rows, self.buffers)


def _read_vocab(bundle: Bundle) -> list[str]:
    """One token per line, the line number being its id (so no line is skipped, blank or not)."""
    try:
        text = bundle.read("vocab").decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BundleError(f"bundle {bundle.root}: {bundle.manifest.files['vocab'].path} is not UTF-8 text") from exc
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line.removesuffix("\r") for line in lines]


def load(
    bundle: Bundle, *, threads: int, limits: DecodeLimits = DEFAULT_LIMITS, preprocess: Preprocess | None = None
) -> Captioner:
    encoder_model, check_encoder = bundle.read_deferred("encoder")
    decoder_model, check_decoder = bundle.read_deferred("decoder")
    vocab = _read_vocab(bundle)
    try:
        encoder = load_engine(bundle.manifest.engine, encoder_model, threads=threads)
        decoder = load_engine(bundle.manifest.engine, decoder_model, threads=threads)
    except Exception:
        check_encoder()  # a corrupt file explains a load failure better than the engine can
        check_decoder()
        raise
    check_encoder()
    check_decoder()
    return Captioner(bundle, encoder, decoder, vocab, limits=limits, preprocess=preprocess)
