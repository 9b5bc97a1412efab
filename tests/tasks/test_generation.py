"""generate's rules in numpy (lambdalite.tasks.generation) against transformers' own pieces.

The logits processors are compared with transformers' classes on random scores and sequences;
greedy and beam search with a decoder whose next-token scores are a known function of the
sequence so far, against `GenerationMixin` running the same function as a torch model.
"""

from __future__ import annotations

import numpy as np
import pytest

from lambdalite.errors import BundleError, InputError
from lambdalite.tasks.generation import RULE_OPTIONS, Rules, beam, greedy, log_softmax

VOCAB = 12


def _hf_processors(rules: Rules, max_length: int, prompt: int) -> object:
    import torch
    from transformers.generation import logits_process as lp

    eos = torch.tensor(list(rules.eos))
    procs = []
    if rules.repetition_penalty != 1.0:
        procs.append(lp.RepetitionPenaltyLogitsProcessor(rules.repetition_penalty))
    if rules.no_repeat_ngram_size:
        procs.append(lp.NoRepeatNGramLogitsProcessor(rules.no_repeat_ngram_size))
    if rules.min_length:
        procs.append(lp.MinLengthLogitsProcessor(rules.min_length, eos))
    if rules.min_new_tokens:
        procs.append(lp.MinNewTokensLengthLogitsProcessor(prompt, rules.min_new_tokens, eos))
    if rules.forced_bos is not None:
        procs.append(lp.ForcedBOSTokenLogitsProcessor(rules.forced_bos))
    if rules.forced_eos:
        procs.append(lp.ForcedEOSTokenLogitsProcessor(max_length, list(rules.forced_eos)))
    if rules.suppress:
        procs.append(lp.SuppressTokensLogitsProcessor(list(rules.suppress)))
    if rules.begin_suppress:
        procs.append(lp.SuppressTokensAtBeginLogitsProcessor(list(rules.begin_suppress), prompt))
    return lp.LogitsProcessorList(procs)


CASES = [
    {"repetition_penalty": 1.7},
    {"repetition_penalty": 0.6},
    {"no_repeat_ngram_size": 2},
    {"no_repeat_ngram_size": 3},
    {"min_length": 6},
    {"min_new_tokens": 4},
    {"forced_bos_id": 5},
    {"forced_eos_id": [3, 4]},
    {"suppress_ids": [1, 7]},
    {"begin_suppress_ids": [2, 9]},
    {"repetition_penalty": 1.3, "no_repeat_ngram_size": 2, "min_length": 5, "suppress_ids": [8]},
]


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("length", [1, 2, 3, 5, 7])
def test_processors_are_transformers(case: dict[str, object], length: int) -> None:
    import torch

    rules = Rules.from_options({"prompt_ids": [0], "eos_ids": [3], **case}, VOCAB)
    rng = np.random.default_rng(length)
    scores = rng.normal(size=(6, VOCAB)).astype(np.float32)
    # Sequences with repeats, so that n-grams and penalties have something to bite on.
    seqs = rng.integers(0, 5, size=(6, length))
    seqs[:, 0] = 0
    want = _hf_processors(rules, 8, 1)(torch.from_numpy(seqs), torch.from_numpy(scores.copy())).numpy()  # type: ignore[operator]
    got = rules.process(scores.astype(np.float64), seqs, 8)
    np.testing.assert_allclose(got, want, rtol=1e-6)
    assert (np.isneginf(got) == np.isneginf(want)).all()


class Table:
    """A decoder whose logits for the next token are a fixed random function of the whole sequence so
    far (a hash of it), so any search over it has one right answer, computed two ways."""

    def __init__(self, seed: int, eos: int, eos_bias: float) -> None:
        self.seed, self.eos, self.eos_bias = seed, eos, eos_bias

    def logits(self, seq: tuple[int, ...]) -> np.ndarray:
        rng = np.random.default_rng(abs(hash((self.seed, seq))) % 2**32)
        x = rng.normal(scale=2.0, size=VOCAB).astype(np.float32)
        x[self.eos] += self.eos_bias * len(seq)  # more likely to end the longer it runs
        return x


class TableRows:
    """generation.Decoder over a Table: rows are sequences, kept and reordered as the search asks."""

    def __init__(self, table: Table, rows: list[tuple[int, ...]]) -> None:
        self.table, self.rows = table, rows

    def __call__(self, tokens: np.ndarray) -> np.ndarray:
        if len(self.rows[0]) == 0:
            self.rows = [tuple(t) for t in tokens.tolist()]
        else:
            self.rows = [(*r, *t) for r, t in zip(self.rows, tokens.tolist(), strict=True)]
        return np.stack([self.table.logits(r) for r in self.rows])

    def keep(self, rows: np.ndarray) -> None:
        self.rows = [self.rows[i] for i in rows.tolist()]


def _hf_generate(table: Table, n: int, prompt: list[int], **kwargs: object) -> list[list[int]]:
    """transformers' generate over the same table, as a decoder-only torch model with no cache."""
    import torch
    from transformers import GenerationConfig, GenerationMixin, PretrainedConfig, PreTrainedModel
    from transformers.modeling_outputs import CausalLMOutput

    class Config(PretrainedConfig):
        model_type = "table"

    class Model(PreTrainedModel, GenerationMixin):
        config_class = Config

        def __init__(self) -> None:
            super().__init__(Config())
            self.dummy = torch.nn.Parameter(torch.zeros(1))

        def forward(self, input_ids: torch.Tensor, attention_mask: object = None, **kwargs: object) -> CausalLMOutput:
            rows = [table.logits(tuple(r)) for r in input_ids.tolist()]
            return CausalLMOutput(logits=torch.from_numpy(np.stack(rows))[:, None, :])

        def prepare_inputs_for_generation(self, input_ids: torch.Tensor, **kwargs: object) -> dict[str, object]:
            return {"input_ids": input_ids}

    model = Model().eval()
    model.generation_config = GenerationConfig(eos_token_id=table.eos, pad_token_id=table.eos, use_cache=False)
    ids = torch.tensor([prompt] * n)
    with torch.no_grad():
        return model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), **kwargs).tolist()  # type: ignore[no-any-return]


def _strip(row: list[int], prompt: int, eos: int, tokens: tuple[int, ...]) -> list[int]:
    generated = row[prompt:]
    assert all(t == eos for t in generated[len(tokens) :])
    return generated[: len(tokens)]


SEARCHES = [
    {},
    {"length_penalty": 0.0},
    {"length_penalty": 2.0},
    {"early_stopping": True},
    {"early_stopping": "never", "length_penalty": 1.2},
    {"no_repeat_ngram_size": 2, "min_length": 4},
    {"repetition_penalty": 1.5},
]


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("settings", SEARCHES)
@pytest.mark.parametrize("k", [1, 2, 3, 5])
@pytest.mark.parametrize("max_length", [6, 14])
def test_searches_are_generates(seed: int, settings: dict[str, object], k: int, max_length: int) -> None:
    table = Table(seed, eos=3, eos_bias=0.25)
    prompt = [0, 7]
    options = {"prompt_ids": prompt, "eos_ids": [3], **settings}
    rules = Rules.from_options(options, VOCAB)
    n = 1  # images of their own are the model tests' business (tests/test_hf_captioner.py)
    if k == 1:
        found = greedy(TableRows(table, [()] * n), n, rules, max_length)
    else:
        found = beam(TableRows(table, [()] * (n * k)), n, k, rules, max_length)
    theirs = _hf_generate(table, n, prompt, num_beams=k, max_length=max_length, **settings)
    for row, hyps in zip(theirs, found, strict=True):
        assert list(hyps[0].tokens) == _strip(row, len(prompt), 3, hyps[0].tokens)
    assert all(len(h) == min(k, len(h)) for h in found)


def test_the_table_ends_captions_early_and_late() -> None:
    """So that the searches above meet captions ending at many lengths, and at max_length."""
    rules = Rules.from_options({"prompt_ids": [0, 7], "eos_ids": [3]}, VOCAB)
    lengths = set()
    for seed in range(6):
        for max_length in (6, 14):
            found = beam(TableRows(Table(seed, 3, 0.25), [()] * 3), 1, 3, rules, max_length)
            lengths |= {(len(h.tokens), h.tokens[-1] == 3) for h in found[0]}
    assert {n for n, ended in lengths if ended} >= {1, 2, 3, 4, 6, 7}
    assert (4, False) in lengths  # ran out of room at max_length 6


def test_beam_scores_are_generates_sequence_scores() -> None:
    import torch  # noqa: F401

    table = Table(7, eos=3, eos_bias=0.3)
    rules = Rules.from_options({"prompt_ids": [0], "eos_ids": [3], "length_penalty": 1.3}, VOCAB)
    found = beam(TableRows(table, [()] * 4), 1, 4, rules, 12)
    logp = 0.0
    seq: tuple[int, ...] = (0,)
    for t in found[0][0].tokens:
        logp += float(log_softmax(table.logits(seq)[None])[0, t])
        seq = (*seq, t)
    assert found[0][0].score == pytest.approx(logp / len(found[0][0].tokens) ** 1.3, rel=1e-9)
    assert [h.score for h in found[0]] == sorted((h.score for h in found[0]), reverse=True)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"eos_ids": [3]}, "options.prompt_ids: missing"),
        ({"prompt_ids": [0]}, "options.eos_ids: missing"),
        (
            {"prompt_ids": [], "eos_ids": []},
            r"options.prompt_ids: expected a list of token ids from 0 to 11 \(at least one\)",
        ),
        ({"prompt_ids": [0], "eos_ids": [12]}, "options.eos_ids: expected a list of token ids from 0 to 11"),
        ({"prompt_ids": [0], "eos_ids": [True]}, "options.eos_ids"),
        ({"prompt_ids": [0], "eos_ids": [], "early_stopping": "sometimes"}, "options.early_stopping"),
        (
            {"prompt_ids": [0], "eos_ids": [], "repetition_penalty": 0},
            "options.repetition_penalty: expected a number > 0",
        ),
        ({"prompt_ids": [0], "eos_ids": [], "min_length": 1.5}, "options.min_length: expected a whole number"),
        ({"prompt_ids": [0], "eos_ids": [], "length_penalty": float("nan")}, "options.length_penalty"),
        ({"prompt_ids": [0], "eos_ids": [], "forced_bos_id": 99}, "options.forced_bos_id"),
    ],
)
def test_bad_rules_are_refused_naming_the_option(options: dict[str, object], message: str) -> None:
    with pytest.raises(BundleError, match=message):
        Rules.from_options(options, VOCAB)


def test_max_length_must_leave_room_after_the_prompt() -> None:
    rules = Rules.from_options({"prompt_ids": [0, 1, 2], "eos_ids": [3]}, VOCAB)
    with pytest.raises(InputError, match="max_length must be more than the 3 prompt token"):
        greedy(TableRows(Table(0, 3, 0.0), [()]), 1, rules, 3)


def test_every_rule_option_has_a_default_or_is_required() -> None:
    assert {k for k, v in RULE_OPTIONS.items() if v is None} >= {"prompt_ids", "eos_ids"}
