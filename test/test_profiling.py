"""Token / MAC ledger: hand-computed MACs, ceil arithmetic per layer, method.md 4.4 numbers,
run-time keep ratios vs a freshly built model."""
from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

from utptrack_ros.cli import main as cli_main
from utptrack_ros.config import PruneConfig
from utptrack_ros.models import create_model
from utptrack_ros.models.encoder import Attention
from utptrack_ros.profiling import count_macs, profile_model
from utptrack_ros.models.examples import example_inputs
from utptrack_ros.models.ledger import expected_ledger
from utptrack_ros.types import Task


def ceil_counts(n_sr: int, n_z: int, depth: int, prune: PruneConfig) -> list[tuple[int, int, int]]:
    """Tokens leaving each block, written out independently of the package: ceil(ratio * n)."""
    ce, dte, ste = dict(prune.ce), dict(prune.dte), dict(prune.ste)
    sr, st, dt, out = n_sr, n_z, n_z, []
    for layer in range(depth):
        sr = math.ceil(ce.get(layer, 1.0) * sr)
        st = math.ceil(ste.get(layer, 1.0) * st)
        dt = math.ceil(dte.get(layer, 1.0) * dt)
        out.append((sr, st, dt))
    return out


def ledger_counts(ledger) -> list[tuple[int, int, int]]:
    return [(lt.sr, lt.st, lt.dt) for lt in ledger.layers]


class _Toy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 16)
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.dw = nn.Conv2d(4, 4, 3, groups=4)  # no padding: 6x6 -> 4x4
        self.bn = nn.BatchNorm2d(4)
        self.attn = Attention(8, num_heads=2)

    def forward(self, tokens: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        a = self.fc(tokens)
        b = self.dw(torch.relu(self.bn(self.conv(image))))
        c, _ = self.attn(tokens)
        return a.sum() + b.sum() + c.sum()


def test_mac_counting_on_a_hand_built_module():
    toy = _Toy().eval()
    tokens, image = torch.randn(1, 5, 8), torch.randn(1, 3, 6, 6)
    macs, _ = count_macs(toy, lambda: toy(tokens, image))
    fc = 5 * 8 * 16  # tokens x in x out
    conv = (4 * 6 * 6) * 3 * 3 * 3  # output elements x Cin x kh x kw
    dw = (4 * 4 * 4) * 1 * 3 * 3  # groups=4: Cin/groups = 1
    qkv, proj = 5 * 8 * 24, 5 * 8 * 8
    assert macs.linear_conv == fc + conv + dw + qkv + proj
    assert macs.attention == 2 * 5 * 5 * 8  # q.k^T + attn.v
    assert macs.complete == macs.paper + macs.attention
    assert macs.attn_tokens == (5,)


@pytest.fixture(scope="module")
def o256_report():
    torch.manual_seed(0)
    return profile_model(create_model("o256").eval(), runs=0)


def test_o256_ledger_and_macs_reproduce_method_4_4(o256_report):
    r = o256_report
    prune = r.pruned.prune
    assert ledger_counts(r.pruned.ledger) == ceil_counts(256, 64, 12, prune)
    assert ledger_counts(r.unpruned.ledger) == [(256, 64, 64)] * 12
    assert r.pruned.ledger.input.visual == 384 and r.pruned.ledger.final.visual == 135
    assert round(r.pruned.ledger.average_visual) == 252
    # every attention block really ran on the tokens the previous block left
    visual = [384] + [lt.visual for lt in r.pruned.ledger.layers[:-1]]
    assert list(r.pruned.macs_frame.attn_tokens) == visual
    assert r.unpruned.macs_full.paper == pytest.approx(34.5e9, rel=0.03)
    assert r.pruned.macs_full.paper == pytest.approx(23.8e9, rel=0.03)
    # complete = paper + 2 N^2 C per block
    extra = sum(2 * n * n * 768 for n in r.pruned.macs_frame.attn_tokens)
    assert r.pruned.macs_frame.complete - r.pruned.macs_frame.paper == extra
    # the template embedding is the only difference between the full forward and a frame
    template_macs = 2 * 64 * 768 * 3 * 16 * 16
    assert r.pruned.macs_full.paper - r.pruned.macs_frame.paper == template_macs
    assert r.ratio("paper_full") == pytest.approx(r.pruned.macs_full.paper / r.unpruned.macs_full.paper)


def test_o384_ledger_and_macs_reproduce_method_4_4():
    torch.manual_seed(0)
    model = create_model("o384").eval()
    x = example_inputs(model.config)
    full = lambda: model(x.search, x.static, x.dynamic, x.static_box, x.dynamic_box)  # noqa: E731
    pruned_macs, out = count_macs(model, full)
    assert ledger_counts(out.ledger) == ceil_counts(576, 144, 12, model.prune)
    assert ledger_counts(out.ledger) == ledger_counts(expected_ledger(model.config))
    assert out.ledger.input.visual == 864 and out.ledger.final.visual == 299
    model.set_prune(model.prune.off())
    unpruned_macs, _ = count_macs(model, full)
    assert unpruned_macs.paper == pytest.approx(78e9, rel=0.03)
    assert pruned_macs.paper == pytest.approx(53e9, rel=0.03)


def test_tiny_ledger_and_text_token_in_attention():
    torch.manual_seed(0)
    model = create_model("tiny").eval()
    report = profile_model(model, runs=0)
    c = model.config
    counts = ceil_counts(c.search_grid**2, c.template_grid**2, c.depth, model.prune)
    assert ledger_counts(report.pruned.ledger) == counts
    assert ledger_counts(expected_ledger(c)) == counts
    # the text token rides along: attention sees visual + 1 tokens
    visual = [report.pruned.ledger.input.visual] + [lt.visual for lt in report.pruned.ledger.layers[:-1]]
    assert list(report.pruned.macs_frame.attn_tokens) == [v + 1 for v in visual]
    assert report.ratio("paper_frame") < 1.0


@pytest.mark.parametrize("name, prompt", [("tiny", False), ("tiny", True), ("o256", False)])
def test_run_time_keep_ratio_equals_a_fresh_model(name, prompt):
    torch.manual_seed(0)
    model = create_model(name).eval()
    budget = model.prune.with_keep_ratio(0.5, 0.5, 0.5)
    model.set_prune(budget)
    fresh = create_model(name, prune=budget).eval()
    fresh.load_state_dict(model.state_dict())
    c = model.config
    x = example_inputs(c, seed=4)
    kwargs = {}
    if prompt:
        kwargs = {"text": torch.randn(1, c.text_dim), "task": torch.tensor([int(Task.LANGUAGE)])}
    with torch.inference_mode():
        a = model(x.search, x.static, x.dynamic, x.static_box, x.dynamic_box, **kwargs)
        b = fresh(x.search, x.static, x.dynamic, x.static_box, x.dynamic_box, **kwargs)
    expected = ceil_counts(c.search_grid**2, c.template_grid**2, c.depth, budget)
    assert ledger_counts(a.ledger) == ledger_counts(b.ledger) == expected
    for field in ("score_map", "size_map", "offset_map", "boxes"):
        assert torch.equal(getattr(a, field), getattr(b, field)), field
    assert torch.equal(a.search_keep_mask, b.search_keep_mask)
    assert int(a.search_keep_mask.sum()) == expected[-1][0]


def test_profile_verb_prints_the_table_and_writes_json(tmp_path, capsys):
    out = tmp_path / "profile.json"
    assert cli_main(["profile", "--config", "tiny", "--keep", "0.5", "--runs", "2", "--warmup", "0", "--threads", "1",
                 "--json", str(out)]) == 0
    text = capsys.readouterr().out
    data = json.loads(out.read_text())
    assert data["model"] == "tiny" and data["threads"] == 1
    layers = [(layer["sr"], layer["st"], layer["dt"]) for layer in data["pruned"]["layers"]]
    budget = create_model("tiny").prune.with_keep_ratio(0.5, 0.5, 0.5)
    assert layers == ceil_counts(144, 36, 6, budget)
    macs_p, macs_u = data["pruned"]["macs"], data["unpruned"]["macs"]
    assert data["ratios"]["paper_frame"] == pytest.approx(macs_p["paper_frame"] / macs_u["paper_frame"])
    lat_p, lat_u = data["pruned"]["latency_ms"]["median"], data["unpruned"]["latency_ms"]["median"]
    assert data["ratios"]["latency"] == pytest.approx(lat_p / lat_u)
    assert len(data["pruned"]["latency_ms"]["runs"]) == 2
    assert f"{layers[-1][0] + layers[-1][1] + layers[-1][2]}" in text and "latency ratio" in text
