"""Text encoders behind one interface (method.md 3.4)."""
from __future__ import annotations

import gzip

import pytest
import torch
from sentence_transformers import SentenceTransformer

from utptrack_ros.errors import CheckpointError
from utptrack_ros.models.clip_text import ClipTextEncoder, ClipTokenizer
from utptrack_ros.models.text import MiniLMEncoder, minilm_path


@pytest.fixture(scope="module")
def minilm():
    return MiniLMEncoder()


def test_minilm_matches_sentence_transformers_pipeline(minilm):
    reference = SentenceTransformer(str(minilm_path()), device="cpu")
    prompts = ["the red cup on the left", "a small grey dog running"]
    ours = minilm.encode(prompts)
    theirs = torch.tensor(reference.encode(prompts))
    assert ours.shape == (2, 384)
    assert torch.allclose(ours, theirs, atol=1e-5)


def test_minilm_blank_prompt_is_zero_and_prompts_differ(minilm):
    out = minilm.encode([None, "   ", "red car", "blue car"])
    assert float(out[:2].abs().sum()) == 0.0
    assert torch.allclose(out[2:].norm(dim=1), torch.ones(2))
    assert float((out[2] - out[3]).abs().sum()) > 0.1


@pytest.fixture
def tiny_clip(tmp_path):
    merges = ["#version: 0.2", "r e", "re d</w>", "c a", "ca r</w>", "t h", "th e</w>"]
    path = tmp_path / "merges.txt.gz"
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        fh.write("\n".join(merges) + "\n")
    tok = ClipTokenizer(path, num_merges=len(merges) - 1)
    torch.manual_seed(0)
    return ClipTextEncoder(tok, width=32, layers=2, heads=4, vocab_size=len(tok.encoder), output_dim=16, context_length=12)


def test_clip_tokenizer_applies_merges_in_rank_order(tiny_clip):
    tok = tiny_clip.tokenizer
    ids = tok.tokenize(["The RED car"], context_length=12)[0].tolist()
    words = [tok.encoder["the</w>"], tok.encoder["red</w>"], tok.encoder["car</w>"]]
    assert ids[:5] == [tok.sot, *words, tok.eot] and ids[5:] == [0] * 7
    assert tok.tokenize([None], 12).abs().sum() == 0  # no description: all-zero ids


def test_clip_pools_the_end_of_text_row_causally(tiny_clip):
    tok = tiny_clip.tokenizer
    ids = tok.tokenize(["the red car"], 12)
    changed = ids.clone()
    changed[0, 6:] = 7  # tokens after the end-of-text position
    a, b = tiny_clip.encode_ids(ids), tiny_clip.encode_ids(changed)
    assert a.shape == (1, 16)
    assert torch.allclose(a, b, atol=1e-6)  # causal: later tokens never reach the EOT row
    zeros = tiny_clip.encode_ids(torch.zeros(1, 12, dtype=torch.long))
    assert not torch.allclose(zeros, a)


def test_clip_weights_load_from_checkpoint_entries(tiny_clip):
    sd = {f"text_encoder.clip.{k}": v.clone() + 1.0 for k, v in tiny_clip.state_dict().items()}
    sd["text_encoder.clip.visual.conv1.weight"] = torch.zeros(4, 3, 2, 2)  # ignored
    sd["text_encoder.clip.logit_scale"] = torch.tensor(4.6)
    other = ClipTextEncoder(tiny_clip.tokenizer, 32, 2, 4, len(tiny_clip.tokenizer.encoder), 16, 12)
    other.load_clip_state_dict(sd)
    assert torch.equal(other.text_projection, tiny_clip.text_projection + 1.0)
    del sd["text_encoder.clip.ln_final.weight"]
    with pytest.raises(CheckpointError, match="ln_final.weight"):
        other.load_clip_state_dict(sd)
