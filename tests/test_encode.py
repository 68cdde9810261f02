"""Encoding pairs: one chat template, a shared prompt, nothing cut, and padding that never changes a score."""

import re

import pytest
import torch

from rmlab.data.encode import OverlongPair, PairEncoder, collate_pairs, encode_all, last_token_index
from rmlab.data.records import PreferencePair, user_prompt
from rmlab.models.families import build_tiny


def test_last_token_index_for_right_and_left_padding():
    right = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]])
    left = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1], [0, 0, 0, 0, 1]])
    assert last_token_index(right).tolist() == [2, 4, 0]
    assert last_token_index(left).tolist() == [4, 4, 4]


@pytest.fixture(scope="module")
def vl():
    model, processor = build_tiny("qwen2_5_vl")
    return model, processor, PairEncoder(processor, max_length=256)


@pytest.fixture(scope="module")
def mm_pairs(synth_dir):
    from rmlab.data.adapters import load_pairs

    return load_pairs("rlaif_v", str(synth_dir / "rlaif_v" / "test.parquet"))


def test_prompt_is_shared_and_responses_follow_it(vl, mm_pairs):
    _, processor, enc = vl
    p = mm_pairs[0]
    e = enc.encode(p)
    tok = processor.tokenizer

    def text(ids):  # the processor expands the image placeholder to one token per merged patch
        return re.sub(r"(<\|image_pad\|>)+", "<|image_pad|>", tok.decode(ids))

    assert text(e.prompt_ids + e.chosen_ids) == enc.render(p.prompt, p.chosen)
    assert text(e.prompt_ids + e.rejected_ids) == enc.render(p.prompt, p.rejected)
    assert e.prompt_ids.count(processor.image_token_id) == 4  # a 56x56 image: 4 merged patches
    assert e.vision["pixel_values"].shape[0] == 16 and e.vision["image_grid_thw"].tolist() == [[1, 4, 4]]


def test_collate_puts_chosen_rows_then_rejected_rows(vl, mm_pairs):
    _, _, enc = vl
    encoded = [enc.encode(p) for p in mm_pairs[:3]]
    batch = collate_pairs(encoded, pad_id=0)
    ids = batch["inputs"]["input_ids"]
    assert ids.shape[0] == 6
    for i, e in enumerate(encoded):
        n_c, n_r = len(e.prompt_ids) + len(e.chosen_ids), len(e.prompt_ids) + len(e.rejected_ids)
        assert ids[i, :n_c].tolist() == e.prompt_ids + e.chosen_ids
        assert ids[3 + i, :n_r].tolist() == e.prompt_ids + e.rejected_ids
        assert batch["pool_index"][i] == n_c - 1 and batch["pool_index"][3 + i] == n_r - 1
        assert batch["response_lengths"][i] == len(e.chosen_ids)
    assert batch["inputs"]["pixel_values"].shape[0] == 6 * 16  # each row carries its image


def test_an_overlong_pair_is_reported_not_cut(vl, mm_pairs):
    model, processor, _ = vl
    enc = PairEncoder(processor, max_length=20)
    long = PreferencePair(
        id="long-1",
        prompt=user_prompt("describe " * 30, n_images=1),
        chosen="a",
        rejected="b",
        images=mm_pairs[0].images,
    )
    with pytest.raises(OverlongPair, match=r"pair long-1: \d+ tokens .* > max_length 20"):
        enc.encode(long)
    encoded, kept, skipped = encode_all(enc, [long], "test", progress=False)
    assert encoded == [] and kept == [] and skipped == {"overlong": 1}


@pytest.mark.parametrize("family", ["qwen2_5_vl", "qwen2_vl", "internvl3", "internvl2", "qwen2_5", "qwen3"])
def test_padding_never_changes_a_score(family, synth_dir):
    """Each pair scored alone equals the same pair scored in a padded batch (pooling finds the last real token)."""
    from rmlab.data.adapters import load_pairs
    from rmlab.models.heads import RewardHead
    from rmlab.models.reward_model import RewardModel

    text = family in ("qwen2_5", "qwen3")
    name, path = ("ultrafeedback", "ultrafeedback/test.jsonl") if text else ("rlaif_v", "rlaif_v/test.parquet")
    pairs = load_pairs(name, str(synth_dir / path))[:6]
    model, processor = build_tiny(family)
    enc = PairEncoder(processor, 256)
    rm = RewardModel(model, RewardHead(64), family, "tiny").eval()
    encoded = [enc.encode(p) for p in pairs]
    assert len({e.length for e in encoded}) > 1, "the batch must actually need padding"
    pad = enc.tokenizer.pad_token_id
    with torch.no_grad():
        # alone: no pool_index given, so the model finds the last real token from the attention mask
        alone = torch.stack([rm({"inputs": collate_pairs([e], pad)["inputs"]}) for e in encoded])
        together = rm(collate_pairs(encoded, pad)).view(2, -1).T
    torch.testing.assert_close(alone, together, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("family", ["qwen2_5_vl", "qwen2_vl", "internvl3", "internvl2", "qwen2_5", "qwen3"])
def test_shared_prefix_layout_scores_as_the_concatenated_one(family, synth_dir):
    """One row per pair (prompt once, 4D mask, restarted positions; M-RoPE for the Qwen-VL families) gives the
    scores of two rows per pair; and the rejected response never sees the chosen one."""
    import copy

    from rmlab.data.adapters import load_pairs
    from rmlab.data.packing import collate_shared_prefix
    from rmlab.models.heads import RewardHead
    from rmlab.models.reward_model import RewardModel

    text = family in ("qwen2_5", "qwen3")
    name, path = ("ultrafeedback", "ultrafeedback/test.jsonl") if text else ("rlaif_v", "rlaif_v/test.parquet")
    model, processor = build_tiny(family)
    enc = PairEncoder(processor, 256)
    rm = RewardModel(model, RewardHead(64), family, "tiny").eval()
    encoded = [enc.encode(p) for p in load_pairs(name, str(synth_dir / path))[:6]]
    pad = enc.tokenizer.pad_token_id
    longer_chosen = copy.deepcopy(encoded)
    for e in longer_chosen:
        e.chosen_ids = e.chosen_ids[:1] * (len(e.chosen_ids) + 3)
    with torch.no_grad():
        concat = rm(collate_pairs(encoded, pad))
        packed = rm(collate_shared_prefix(encoded, pad))
        changed = rm(collate_shared_prefix(longer_chosen, pad))
    torch.testing.assert_close(packed, concat, atol=1e-5, rtol=1e-4)
    n = len(encoded)
    torch.testing.assert_close(changed[n:], packed[n:], atol=1e-5, rtol=1e-4)  # rejected scores untouched
    assert (changed[:n] - packed[:n]).abs().max() > 1e-3  # while the chosen ones did change


def test_a_video_becomes_its_frames_in_place(vl, mm_pairs):
    """MM-RLHF's video rows: the frames enter as images where the video stood, never silently dropped."""
    from rmlab.data.encode import frames_as_images

    _, processor, enc = vl
    frames = mm_pairs[0].images + mm_pairs[1].images + mm_pairs[2].images
    pair = PreferencePair(
        id="v",
        prompt=[{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "What happens?"}]}],
        chosen="a ball rolls",
        rejected="nothing",
        videos=[frames],
    )
    prompt, refs = frames_as_images(pair)
    assert prompt[0]["content"] == [{"type": "image"}] * 3 + [{"type": "text", "text": "What happens?"}]
    assert refs == frames
    e = enc.encode(pair)
    assert e.prompt_ids.count(processor.image_token_id) == 3 * 4 and e.vision["image_grid_thw"].shape[0] == 3
