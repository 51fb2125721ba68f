"""Packing a group's rows into one sequence: the layout, when it is refused, and that it scores as the rows do.

The layout tests use hand-written token ids; the equivalence tests run `HUDGRPOTrainer`'s pass and TRL's own
per-row pass on the same micro-batch of a random float64 Llama (no rounding to hide a wrong mask or position).
"""

from __future__ import annotations

from typing import Any

import pytest

torch = pytest.importorskip("torch", reason="the training tests need: pip install -e '.[train]'")
trl = pytest.importorskip("trl", reason="the training tests need: pip install -e '.[train]'")
transformers = pytest.importorskip("transformers", reason="the training tests need: pip install -e '.[train]'")

from hud_vf_gym.training.shared_prefix import IGNORED_LABEL, pack_groups, unpack  # noqa: E402
from hud_vf_gym.training.trainer import HUDGRPOTrainer  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

PROMPT_WIDTH = 6
A, B = [5, 6, 7, 8], [9, 10, 11, 12, 13, 14]


def micro_batch(rows: list[tuple[list[int], list[int]]], width: int = 5) -> tuple[Any, Any]:
    """TRL's layout: prompts left-padded to PROMPT_WIDTH, completions right-padded to `width`."""
    ids = torch.zeros(len(rows), PROMPT_WIDTH + width, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for row, (prompt, completion) in enumerate(rows):
        ids[row, PROMPT_WIDTH - len(prompt) : PROMPT_WIDTH] = torch.tensor(prompt)
        mask[row, PROMPT_WIDTH - len(prompt) : PROMPT_WIDTH] = 1
        ids[row, PROMPT_WIDTH : PROMPT_WIDTH + len(completion)] = torch.tensor(completion, dtype=torch.long)
        mask[row, PROMPT_WIDTH : PROMPT_WIDTH + len(completion)] = 1
    return ids, mask


def test_a_group_reads_its_prompt_once_and_each_segment_sees_only_the_prompt_and_itself() -> None:
    ids, mask = micro_batch([(A, [1, 2, 3]), (A, [4, 5])])
    plan = pack_groups(ids, mask, logits_to_keep=5, max_tokens=100)
    assert plan is not None and plan.alone == []
    (group,) = plan.groups
    assert group.rows == (0, 1) and group.lengths == (3, 2)
    # prompt[:-1] | prompt[-1], c1[:-1] | prompt[-1], c2[:-1]
    assert group.input_ids.tolist() == [[5, 6, 7, 8, 1, 2, 8, 4]]
    assert group.position_ids.tolist() == [[0, 1, 2, 3, 4, 5, 3, 4]]
    ignored = IGNORED_LABEL
    assert group.shift_labels.tolist() == [[ignored, ignored, ignored, 1, 2, 3, 4, 5]]
    visible = group.visible[0, 0].int().tolist()
    assert visible[6] == [1, 1, 1, 0, 0, 0, 1, 0]  # the second segment's first token: the prompt and itself
    assert visible[5] == [1, 1, 1, 1, 1, 1, 0, 0]  # the first segment's last token: causal within its segment


def test_rows_are_grouped_by_prompt_and_a_lone_row_is_left_to_trl() -> None:
    ids, mask = micro_batch([(A, [1]), (B, [2, 3]), (A, [4, 5]), (A, [])])
    plan = pack_groups(ids, mask, logits_to_keep=5, max_tokens=100)
    assert plan is not None
    assert [group.rows for group in plan.groups] == [(0, 2)]
    assert sorted(plan.alone) == [1, 3]  # B shares with no row; row 3 has nothing to score


def test_a_group_longer_than_max_tokens_is_split() -> None:
    ids, mask = micro_batch([(A, [1, 2, 3, 4])] * 5)
    plan = pack_groups(ids, mask, logits_to_keep=5, max_tokens=3 + 2 * 4)
    assert plan is not None
    assert [group.rows for group in plan.groups] == [(0, 1), (2, 3)]
    assert plan.alone == [4]
    assert all(group.input_ids.size(1) <= 11 for group in plan.groups)


@pytest.mark.parametrize(
    "rows",
    [
        [(A, [1, 2]), (B, [3, 4])],  # no prompt is shared: nothing to save
    ],
)
def test_packing_is_declined_when_it_saves_nothing(rows: list[tuple[list[int], list[int]]]) -> None:
    ids, mask = micro_batch(rows)
    assert pack_groups(ids, mask, logits_to_keep=5, max_tokens=100) is None


def test_a_completion_with_holes_is_never_packed() -> None:
    ids, mask = micro_batch([(A, [1, 2, 3]), (A, [4, 5, 6])])
    mask[0, PROMPT_WIDTH + 1] = 0
    assert pack_groups(ids, mask, logits_to_keep=5, max_tokens=100) is None


def test_only_trained_positions_are_scored_and_the_others_stay_context() -> None:
    ids, mask = micro_batch([(A, [1, 2, 3, 4]), (A, [5, 6])])
    trained = torch.tensor([[1, 0, 0, 1, 0], [1, 1, 0, 0, 0]])  # row 0: tokens 2 and 3 are the environment's
    plan = pack_groups(ids, mask, logits_to_keep=5, max_tokens=100, trained=trained)
    assert plan is not None
    (group,) = plan.groups
    assert group.input_ids.tolist() == [[5, 6, 7, 8, 1, 2, 3, 8, 5]]  # every token is still read
    ignored = IGNORED_LABEL
    assert group.shift_labels.tolist() == [[ignored] * 3 + [1, ignored, ignored, 4, 5, 6]]
    values = group.shift_labels[0][group.scored].double()
    out = unpack(plan.groups, [values], rows=2, logits_to_keep=5)
    assert out.tolist() == [[1, 0, 0, 4, 0], [5, 6, 0, 0, 0]]


def test_unpack_puts_values_back_in_rows_and_zeros_elsewhere() -> None:
    ids, mask = micro_batch([(A, [1, 2, 3]), (B, [9]), (A, [4, 5])])
    plan = pack_groups(ids, mask, logits_to_keep=5, max_tokens=100)
    assert plan is not None
    (group,) = plan.groups
    values = group.shift_labels[0][group.scored].double()  # each scored position's value is its label
    out = unpack(plan.groups, [values], rows=3, logits_to_keep=5)
    assert out.tolist() == [[1, 2, 3, 0, 0], [0, 0, 0, 0, 0], [4, 5, 0, 0, 0]]


@pytest.fixture(scope="module")
def tiny_trainer(tmp_path_factory: pytest.TempPathFactory, tiny_model: Any) -> Any:
    """A HUDGRPOTrainer over a float64 copy of the tiny model (only its log-probability pass is used)."""
    import datasets

    tokenizer = transformers.AutoTokenizer.from_pretrained(tiny_model)
    model = transformers.AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float64)
    args = trl.GRPOConfig(
        output_dir=str(tmp_path_factory.mktemp("packed")),
        use_cpu=True,
        bf16=False,
        per_device_train_batch_size=4,
        num_generations=4,
        report_to="none",
    )
    return HUDGRPOTrainer(
        model=model,
        processing_class=tokenizer,
        reward_funcs=[lambda completions, **_: [0.0] * len(completions)],
        args=args,
        train_dataset=datasets.Dataset.from_dict({"prompt": ["a"] * 4}),
    )


@pytest.mark.parametrize("implementation", ["sdpa", "eager"])
def test_packed_log_probs_entropies_and_gradients_are_the_per_row_ones(tiny_trainer: Any, implementation: str) -> None:
    model = tiny_trainer.model
    model.config._attn_implementation = implementation
    model.train()
    # every prompt fills PROMPT_WIDTH: TRL's own pass gives NaN on left-padded rows under float64 eager attention
    prompt = [11, 12, 13, 14, 15, 16]
    other = [21, 22, 23, 24, 25, 26]
    ids, mask = micro_batch([(prompt, [1, 2, 3, 4, 5]), (prompt, [7, 8]), (other, [3, 3, 3]), (prompt, [9, 10, 11])])

    def scored(share: bool) -> tuple[Any, Any, list[Any]]:
        tiny_trainer.share_prompts = share
        logps, entropies, _ = tiny_trainer._get_per_token_logps_and_entropies(model, ids, mask, 5, compute_entropy=True)
        loss = (logps * mask[:, PROMPT_WIDTH:]).sum()
        return logps, entropies, list(torch.autograd.grad(loss, list(model.parameters())))

    packed_logps, packed_entropies, packed_grads = scored(True)
    row_logps, row_entropies, row_grads = scored(False)
    # the model runs in float64, so a wrong mask or position would show at 1e-3; both LM heads compute in float32
    torch.testing.assert_close(packed_logps, row_logps, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(packed_entropies, row_entropies, rtol=1e-6, atol=1e-6)
    for packed, per_row in zip(packed_grads, row_grads, strict=True):
        # float32 heads: gradients (up to ~10 here) agree to float32 rounding; a wrong mask moves them by >1e-2
        torch.testing.assert_close(packed, per_row, rtol=1e-4, atol=1e-5)
    assert packed_logps[:, :2].abs().min() > 0  # real log-probabilities, not an all-zero result that would match


def test_the_loss_pass_scores_the_models_tokens_only_with_the_per_row_values(tiny_trainer: Any) -> None:
    model = tiny_trainer.model
    model.config._attn_implementation = "sdpa"
    prompt = [11, 12, 13, 14, 15, 16]
    ids, mask = micro_batch([(prompt, [1, 2, 3, 4, 5]), (prompt, [7, 8, 9])])
    trained = torch.tensor([[1, 1, 0, 0, 1], [0, 1, 1, 0, 0]])  # what TRL's tool_mask holds during the loss pass
    tiny_trainer.share_prompts = False
    per_row, _, _ = tiny_trainer._get_per_token_logps_and_entropies(model, ids, mask, 5)
    tiny_trainer.share_prompts = True
    tiny_trainer._trained_positions = trained
    try:
        packed, _, _ = tiny_trainer._get_per_token_logps_and_entropies(model, ids, mask, 5)
    finally:
        tiny_trainer._trained_positions = None
    torch.testing.assert_close(packed * trained, per_row * trained, rtol=1e-6, atol=1e-6)
    assert torch.all(packed[trained == 0] == 0)  # the environment's tokens were never projected
