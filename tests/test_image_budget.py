"""The image budget: a large image stays within it (Qwen-VL pixels, InternVL tiles), its tokens are predicted exactly
from its header, an overlong pair is refused before any image is decoded, a pair that fits encodes as it did, and the
budget is saved with the processor."""

import io

import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image, ImageFile

from rmlab.config.schema import BackboneConfig, DataMixConfig, ScaleConfig
from rmlab.data.encode import OverlongPair, PairEncoder
from rmlab.data.records import PreferencePair, user_prompt
from rmlab.models.backbone import load_processor_only
from rmlab.models.families import FAMILIES
from rmlab.models.image_budget import apply_image_budget, image_size, image_tokens
from rmlab.models.processors import ImageOnlyInternVLProcessor, ImageOnlyQwen25VLProcessor
from rmlab.models.tiny import tiny_tokenizer
from rmlab.paradigms.critic import CriticEncoder
from rmlab.paradigms.grm import GRM_INSTRUCTION, JudgeEncoder, label_target
from rmlab.paradigms.sft import AnswerEncoder

BUDGET = DataMixConfig()  # the defaults: max_pixels 1280*28*28, min_pixels 4*28*28, max_tiles 6
MULTIMODAL = ["qwen2_5_vl", "qwen2_vl", "internvl3", "internvl2"]


def encoded(width: int, height: int, fmt: str = "JPEG") -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), (180, 40, 90)).save(buf, fmt)
    return buf.getvalue()


@pytest.fixture(scope="module")
def photo() -> bytes:
    """A 4000x3000 camera photo's size."""
    return encoded(4000, 3000)


def tiny_processor(family: str):
    """The tiny build's processor, without building its model."""
    from rmlab.config.schema import TinyConfig

    return FAMILIES.get(family).tiny(tiny_tokenizer(family), TinyConfig())[2]


def processor_for(family: str):
    """`real_*`: a processor configured like the released checkpoint's; else the family's tiny one."""
    real = {"real_qwen2_5_vl": real_qwen25_vl, "real_internvl3": real_internvl3}.get(family)
    return real() if real else tiny_processor(family)


def real_qwen25_vl():
    """A processor set up as Qwen2.5-VL-7B-Instruct's preprocessor_config.json (patch 14, merge 2, min_pixels 3136,
    max_pixels 12845056), built offline around the tiny tokenizer."""
    import transformers as tf

    tok = tiny_tokenizer("qwen2_5_vl")
    image_processor = tf.Qwen2VLImageProcessorPil(
        min_pixels=3136, max_pixels=12845056, patch_size=14, merge_size=2, temporal_patch_size=2
    )
    return ImageOnlyQwen25VLProcessor(image_processor=image_processor, tokenizer=tok, chat_template=tok.chat_template)


def real_internvl3():
    """A processor set up as InternVL3's: 448 px tiles cut to the image's aspect (up to 12 + a thumbnail), 256
    tokens per tile."""
    import transformers as tf

    tok = tiny_tokenizer("internvl3")
    image_processor = tf.GotOcr2ImageProcessorPil(
        size={"height": 448, "width": 448}, crop_to_patches=True, min_patches=1, max_patches=12
    )
    return ImageOnlyInternVLProcessor(
        image_processor=image_processor, tokenizer=tok, image_seq_length=256, chat_template=tok.chat_template
    )


def through(processor, images: list[bytes]):
    text = processor.tokenizer.apply_chat_template(user_prompt("what is it?", len(images)), tokenize=False)
    return processor(text=[text], images=[[Image.open(io.BytesIO(b)) for b in images]], return_tensors="pt")


def placeholder_count(processor, ids: list[int]) -> int:
    """The tokens the processor put in place of images (InternVL's <img>/</img> included, as image_tokens counts)."""
    marks = set(getattr(processor, "image_token_ids", [processor.image_token_id]))
    return sum(i in marks for i in ids)


def test_a_large_image_stays_within_the_qwen_pixel_budget(photo):
    processor = real_qwen25_vl()
    unbounded = processor.image_processor.get_number_of_image_patches(3000, 4000, {}) * 14 * 14
    assert unbounded > 10 * BUDGET.max_pixels  # the checkpoint's own settings: ~12M pixels (~15k tokens)

    apply_image_budget(processor, "qwen2_5_vl", BUDGET)
    out = through(processor, [photo])
    patches = out["image_grid_thw"].prod().item()
    assert patches * 14 * 14 <= BUDGET.max_pixels and out["pixel_values"].shape[0] == patches
    assert image_size(photo) == (3000, 4000)
    assert (
        image_tokens(processor, [(3000, 4000)])
        == [patches // 4]
        == [placeholder_count(processor, out["input_ids"][0].tolist())]
    )


def test_a_large_image_takes_at_most_max_tiles_plus_a_thumbnail_in_internvl(photo):
    processor = real_internvl3()
    assert processor.image_processor.get_number_of_image_patches(3000, 4000, {}) == 13  # 12 tiles + a thumbnail

    apply_image_budget(processor, "internvl3", BUDGET)
    out = through(processor, [photo])
    tiles = out["pixel_values"].shape[0]
    assert 1 < tiles <= BUDGET.max_tiles + 1
    assert (
        image_tokens(processor, [(3000, 4000)])
        == [2 + 256 * tiles]
        == [placeholder_count(processor, out["input_ids"][0].tolist())]
    )


def test_a_text_family_has_no_image_budget():
    tok = tiny_tokenizer("qwen3")
    assert apply_image_budget(tok, "qwen3", BUDGET) is tok


def _pair_with_video(images: list[bytes], frames: list[bytes]) -> PreferencePair:
    content = [{"type": "image"}, {"type": "text", "text": "what changes in"}, {"type": "video"}]
    content += [{"type": "image"}] * (len(images) - 1) + [{"type": "text", "text": "?"}]
    return PreferencePair(
        id="v",
        prompt=[{"role": "user", "content": content}],
        chosen="the colour",
        rejected="nothing at all",
        images=images,
        videos=[frames],
    )


@pytest.fixture(scope="module")
def mixed_pair() -> PreferencePair:
    """Images of several sizes and formats (one over the pixel budget, a tall strip, one under min_pixels) and a
    video of three frames, as bytes and as a {bytes, path} dict."""
    images = [encoded(1400, 1000), {"bytes": encoded(90, 700, "PNG"), "path": None}, encoded(40, 30, "PNG")]
    frames = [encoded(320, 180), encoded(320, 180), encoded(640, 480)]
    return _pair_with_video(images, frames)


@pytest.mark.parametrize("family", [*MULTIMODAL, "real_qwen2_5_vl", "real_internvl3"])
def test_predicted_tokens_equal_the_processors(family, mixed_pair):
    """Per image and for the whole prompt, video frames included: the count from the headers is the count after
    preprocessing."""
    from rmlab.data.encode import frames_as_images

    name = family.removeprefix("real_")
    processor = processor_for(family)
    apply_image_budget(processor, name, BUDGET)
    enc = PairEncoder(processor, 1 << 16)  # six images of up to 7 InternVL tiles: over the default max_length
    messages, refs = frames_as_images(mixed_pair)
    assert len(refs) == 6
    e = enc.encode(mixed_pair)
    sizes = [image_size(r) for r in refs]
    assert placeholder_count(processor, e.prompt_ids) == sum(image_tokens(processor, sizes))
    assert enc.predict_prompt_length(enc.render(messages), refs) == len(e.prompt_ids)
    assert enc.refused_early == 0


@pytest.fixture()
def decodes(monkeypatch) -> list:
    """Every image decode (PIL's `load`) while the test runs."""
    seen = []
    load = ImageFile.ImageFile.load

    def counted(self):
        seen.append(self.size)
        return load(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", counted)
    return seen


def _encoders(processor, max_length: int) -> dict:
    return {
        "pair": PairEncoder(processor, max_length),
        "critic": CriticEncoder(processor, max_length, "ground_truth"),
        "grm": JudgeEncoder(processor, max_length, GRM_INSTRUCTION, label_target),
        "sft": AnswerEncoder(processor, max_length),
    }


@pytest.fixture(scope="module")
def qwen():
    return apply_image_budget(tiny_processor("qwen2_5_vl"), "qwen2_5_vl", BUDGET)


def _photo_pair(photo: bytes, chosen: str = "red", rejected: str = "blue") -> PreferencePair:
    return PreferencePair(
        id="big",
        prompt=user_prompt("what colour is it?", 1),
        chosen=chosen,
        rejected=rejected,
        images=[photo],
        meta={"chosen_reason": "it is red", "rejected_reason": "it is not blue"},
    )


@pytest.mark.parametrize("kind", ["pair", "critic", "grm", "sft"])
def test_an_overlong_pair_is_refused_before_any_image_is_decoded(kind, qwen, photo, decodes):
    """The photo is 1230 tokens under the budget: over max_length 1000 whatever the responses; then a prompt that
    fits, but not with its longer response (the judge's prompt holds both responses, so there the prompt alone)."""
    pair = _photo_pair(photo)
    enc = _encoders(qwen, 1000)[kind]
    with pytest.raises(OverlongPair, match=r"pair big: \d+ tokens .*predicted.* > max_length 1000"):
        enc.encode(pair)
    assert enc.refused_early == 1 and decodes == []

    prompt = enc.predict_prompt_length(enc.render(pair.prompt), pair.images)
    long = _photo_pair(photo, chosen="it is red " * 20, rejected="no it is blue " * 20)
    enc = _encoders(qwen, prompt + 5)[kind]
    with pytest.raises(OverlongPair):
        enc.encode(long)
    assert enc.refused_early == 1 and decodes == []


@pytest.mark.parametrize("kind", ["pair", "critic", "grm", "sft"])
@pytest.mark.parametrize("family", ["qwen2_5_vl", "internvl3"])
def test_a_pair_that_fits_encodes_exactly_as_without_the_prediction(kind, family, mixed_pair, monkeypatch):
    processor = apply_image_budget(tiny_processor(family), family, BUDGET)
    pair = PreferencePair(**{**vars(mixed_pair), "meta": {"chosen_reason": "yes", "rejected_reason": "no"}})
    predicted = _encoders(processor, BUDGET.max_length)[kind].encode(pair)
    monkeypatch.setattr(PairEncoder, "_refuse_from_prediction", lambda *a, **k: None)
    plain = _encoders(processor, BUDGET.max_length)[kind].encode(pair)
    assert _same(predicted, plain)


def _same(a, b) -> bool:
    """Equal all the way down: dataclasses field by field, tensors element by element."""
    if torch.is_tensor(a):
        return torch.is_tensor(b) and a.shape == b.shape and a.dtype == b.dtype and torch.equal(a, b)
    if hasattr(a, "__dataclass_fields__"):
        return type(a) is type(b) and _same(vars(a), vars(b))
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return type(a) is type(b) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


@pytest.mark.parametrize("family", [*MULTIMODAL, "real_qwen2_5_vl", "real_internvl3"])
def test_the_budget_is_saved_with_the_processor(family, tmp_path, photo):
    name = family.removeprefix("real_")
    processor = processor_for(family)
    budget = DataMixConfig(max_pixels=256 * 28 * 28, min_pixels=8 * 28 * 28, max_tiles=3)
    apply_image_budget(processor, name, budget)
    processor.save_pretrained(tmp_path)
    loaded = FAMILIES.get(name).load_processor(str(tmp_path))
    assert image_tokens(loaded, [(3000, 4000), (20, 20)]) == image_tokens(processor, [(3000, 4000), (20, 20)])
    if name.startswith("qwen"):
        assert (loaded.image_processor.size.shortest_edge, loaded.image_processor.size.longest_edge) == (
            budget.min_pixels,
            budget.max_pixels,
        )
        assert through(loaded, [photo])["image_grid_thw"].prod().item() * 14 * 14 <= budget.max_pixels
    else:
        assert loaded.image_processor.max_patches == budget.max_tiles
        assert through(loaded, [photo])["pixel_values"].shape[0] <= budget.max_tiles + 1


def test_a_processor_made_for_a_config_carries_its_budget():
    backbone = OmegaConf.structured(BackboneConfig(family="internvl3"))
    scale = OmegaConf.structured(ScaleConfig())
    assert load_processor_only(backbone, scale, DataMixConfig(max_tiles=2)).image_processor.max_patches == 2
    backbone = OmegaConf.structured(BackboneConfig(family="qwen2_vl"))
    size = load_processor_only(backbone, scale, DataMixConfig(max_pixels=64 * 28 * 28)).image_processor.size
    assert size.longest_edge == 64 * 28 * 28
