"""Pure pruning primitives and one CTEM step on hand-made attention (method.md 4)."""
from __future__ import annotations

import math

import pytest
import torch

from utptrack_ros.config import PruneConfig
from utptrack_ros.models import pruning
from utptrack_ros.models.encoder import Attention, Block, TokenState


def test_keep_count_is_ceil_of_ratio_times_n():
    assert [pruning.keep_count(0.7, n) for n in (256, 180, 126)] == [180, 126, 89]
    assert [pruning.keep_count(0.7, n) for n in (64, 45, 32)] == [45, 32, 23]
    assert [pruning.keep_count(0.7, n) for n in (576, 404, 283)] == [404, 283, 199]
    assert [pruning.keep_count(0.6, n) for n in (49, 30, 18)] == [30, 18, 11]
    assert pruning.keep_count(1.0, 7) == 7


@pytest.mark.parametrize("grid,index", [(7, 24), (8, 27), (12, 65), (14, 90), (6, 14)])
def test_centre_index(grid, index):
    assert pruning.centre_index(grid) == index


def test_select_topk_orders_by_descending_score_and_is_stable():
    scores = torch.tensor([[0.1, 0.5, 0.3, 0.5, 0.0]])
    assert pruning.select_topk(scores, 3).tolist() == [[1, 3, 2]]


def test_restore_scatters_kept_tokens_and_zeros_the_rest():
    kept = torch.arange(1.0, 7.0).view(1, 3, 2)  # tokens for positions 4, 0, 2
    out = pruning.restore_search(kept, torch.tensor([[4, 0, 2]]), 5)
    assert out[0].tolist() == [[3, 4], [0, 0], [5, 6], [0, 0], [1, 2]]


def test_foreground_fraction_matches_pixel_rasterisation():
    size, patch = 64, 16
    box = torch.tensor([[0.1, 0.2, 0.6, 0.55]])
    frac = pruning.foreground_fraction(box, size, patch)
    x, y, w, h = (box[0] * size).tolist()
    u = torch.arange(size, dtype=torch.float32)
    inside_x = (u >= x) & (u < x + w)
    inside_y = (u >= y) & (u < y + h)
    mask = (inside_y[:, None] & inside_x[None, :]).float()
    ref = mask.view(4, patch, 4, patch).mean(dim=(1, 3)).flatten()
    assert torch.allclose(frac[0], ref)
    assert frac.min() == 0 and frac.max() == 1  # the box covers some cells fully, some not at all


@pytest.mark.parametrize(
    "mode,expected",
    [("none", [0, 0, 0, 0]), ("soft", [0, 0.25, 1, 0.5]), ("all", [0, 1, 1, 1]), ("full", [0, 0, 1, 0])],
)
def test_tta_bonus_modes(mode, expected):
    fg = torch.tensor([[0.0, 0.25, 1.0, 0.5]])
    assert pruning.tta_bonus(fg, mode)[0].tolist() == expected


def test_text_guidance_only_changes_scores_of_prompted_samples():
    centre = torch.rand(2, 10)
    text = torch.rand(2, 10)
    weight = torch.tensor([1.0, 0.0])
    s = pruning.component_scores(centre, 2, 8, text, weight)
    assert torch.allclose(s[0], (centre[0, 2:8] + text[0, 2:8]) / 2)
    assert torch.equal(s[1], centre[1, 2:8])  # no prompt: exactly the centre score
    assert torch.equal(pruning.component_scores(centre, 2, 8), centre[:, 2:8])


def test_keep_rate_schedule_matches_method_numbers():
    assert pruning.keep_rate_schedule(10, 0.7, 20, 80) == 1.0
    assert math.isclose(pruning.keep_rate_schedule(60, 0.7, 20, 80), 0.85)
    assert math.isclose(pruning.keep_rate_schedule(100, 0.7, 20, 80), 0.7)


# -- one CTEM step on hand-made attention -----------------------------------------------------

N_SR, N_Z = 6, 4  # 2x2 template grid -> centre index 0


def _state(st_fg, text=False, text_weight=1.0):
    b = st_fg.shape[0]
    centre = torch.zeros(b, N_Z, dtype=torch.bool)
    centre[:, pruning.centre_index(2)] = True
    return TokenState(
        n_sr=N_SR,
        n_st=N_Z,
        n_dt=N_Z,
        sr_index=torch.arange(N_SR).expand(b, N_SR),
        st_centre=centre,
        st_fg=st_fg,
        text_weight=torch.full((b,), text_weight) if text else None,
    )


def _eliminate(prune, state, keep, centre_row, text_row=None):
    """One CTEM step with the given head-averaged centre (and text) attention rows."""
    blk = Block(8, 2, 2.0, 0.0, 1e-6, layer=0)
    n = len(centre_row)
    x = torch.arange(float(n)).view(1, n, 1).expand(1, n, 8).clone()  # token id in every channel
    active = (keep[0] < state.n_sr, keep[1] < state.n_st, keep[2] < state.n_dt)
    text = torch.tensor([text_row]) if text_row is not None else None
    out, new_state = blk._eliminate(x, torch.tensor([centre_row]), text, state, keep, active, prune)
    return out[0, :, 0].long().tolist(), new_state


@pytest.mark.parametrize(
    "mode,kept_st",
    [
        # ST attention (centre first) 0.04, 0.02, 0.03, 0.01; foreground 0.5, 0.25, 0, 1
        ("none", [6, 8, 7]),  # attention alone after the +1 centre bonus
        ("soft", [6, 9, 7]),  # + foreground fraction
        ("all", [6, 7, 9]),  # + 1 for any overlap
        ("full", [6, 9, 8]),  # + 1 only for the fully covered patch
    ],
)
def test_ste_keeps_centre_and_follows_tta_mode(mode, kept_st):
    fg = torch.tensor([[0.5, 0.25, 0.0, 1.0]])
    n = N_SR + 2 * N_Z
    centre_row = [0.0] * n
    centre_row[N_SR : N_SR + N_Z] = [0.04, 0.02, 0.03, 0.01]
    prune = PruneConfig(ste=((0, 0.75),), tta_mode=mode)
    ids, state = _eliminate(prune, _state(fg), (N_SR, 3, N_Z), centre_row)
    assert ids[N_SR : N_SR + 3] == kept_st
    assert state.st_centre[0].tolist() == [True, False, False]  # the centre mask moved with its token
    assert state.st_fg[0].tolist() == [fg[0, i - N_SR].item() for i in kept_st]
    assert state.n_st == 3 and state.n_sr == N_SR and state.n_dt == N_Z


def test_ce_and_dte_use_the_static_centre_row_and_keep_score_order():
    n = N_SR + 2 * N_Z
    row = [0.0] * n
    for pos, v in {3: 0.5, 1: 0.3, 5: 0.1, 12: 0.4, 11: 0.2}.items():
        row[pos] = v
    prune = PruneConfig(ce=((0, 0.5),), dte=((0, 0.5),))
    ids, state = _eliminate(prune, _state(torch.zeros(1, N_Z)), (3, N_Z, 2), row)
    assert ids[:3] == [3, 1, 5]  # search tokens re-ordered by descending score
    assert state.sr_index[0].tolist() == [3, 1, 5]
    assert ids[3 + N_Z :] == [12, 11]  # dynamic template pruned by the same centre row


def test_text_row_steers_pruning_only_for_language_samples():
    n = N_SR + 2 * N_Z + 1
    centre_row = [0.0] * n
    centre_row[0], centre_row[1] = 0.30, 0.25
    text_row = [0.0] * n
    text_row[4], text_row[5] = 0.9, 0.8
    prune = PruneConfig(ce=((0, 0.34),), text_guided="C")
    state = _state(torch.zeros(1, N_Z), text=True, text_weight=1.0)
    ids, _ = _eliminate(prune, state, (3, N_Z, N_Z), centre_row, text_row)
    assert ids[:3] == [4, 5, 0]  # (centre + text) / 2
    state = _state(torch.zeros(1, N_Z), text=True, text_weight=0.0)
    ids, _ = _eliminate(prune, state, (3, N_Z, N_Z), centre_row, text_row)
    assert ids[:3] == [0, 1, 2]  # no prompt: the centre row alone (ties in order)


def test_attention_row_probabilities_equal_the_full_softmax():
    attn = Attention(16, 4).eval()
    x = torch.randn(2, 9, 16)
    rows = torch.tensor([[3, 8], [5, 8]])
    with torch.no_grad():
        out, row_probs = attn(x, rows)
        q, k, v = attn.qkv(x).reshape(2, 9, 3, 4, 4).permute(2, 0, 3, 1, 4).unbind(0)
        full = ((q * attn.scale) @ k.transpose(-2, -1)).softmax(-1)  # (B, H, N, N)
        ref_out = attn.proj((full @ v).transpose(1, 2).reshape(2, 9, 16))
    for b in range(2):
        assert torch.allclose(row_probs[b], full[b][:, rows[b]], atol=1e-6)
    assert torch.allclose(out, ref_out, atol=1e-5)
