"""`skinny_linear`: few-row products without gradients take `W @ x.T`; everything else is `F.linear`, untouched."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch", reason="the embedded model needs: pip install -e '.[local]'")

from hud_vf_gym.local_model.skinny_linear import MAX_ROWS, skinny_linear  # noqa: E402


def small_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(24, 40), torch.nn.SiLU(), torch.nn.Linear(40, 16, bias=False))


def test_few_row_inputs_give_f_linears_values_in_the_same_shape() -> None:
    model = small_model()
    inputs = torch.randn(2, 3, 24)  # 6 rows, batch and sequence dimensions kept
    with torch.no_grad():
        expected = model(inputs)
        with skinny_linear(model) as patched:
            output = model(inputs)
    assert patched == 2
    assert output.shape == expected.shape and output.is_contiguous()
    torch.testing.assert_close(output, expected, rtol=1e-5, atol=1e-6)  # only the summation order differs


@pytest.mark.parametrize("rows", [1, MAX_ROWS + 1], ids=["one row", "a prefill block"])
def test_one_row_and_long_blocks_stay_on_f_linear(rows: int) -> None:
    model = small_model()
    inputs = torch.randn(rows, 24)
    with torch.no_grad():
        expected = model(inputs)
        with skinny_linear(model):
            assert torch.equal(model(inputs), expected)


def test_a_pass_that_records_gradients_stays_on_f_linear_and_the_block_undoes_itself() -> None:
    model = small_model()
    inputs = torch.randn(4, 24)
    expected = model(inputs)
    with skinny_linear(model):
        output = model(inputs)
        assert torch.equal(output, expected) and output.requires_grad  # training passes are never changed
    assert all("forward" not in vars(module) for module in model.modules())


def test_layers_with_a_forward_of_their_own_are_left_alone() -> None:
    model = small_model()
    hooked = model[0]
    hooked.forward = lambda x: torch.zeros(x.shape[0], 40)  # what an offloading hook or adapter would install
    with skinny_linear(model) as patched:
        assert patched == 1
    assert vars(hooked)["forward"] is not None and "forward" not in vars(model[2])
