"""R1-Reward RL data (yifanzhang114/R1-Reward-RL): a question, two responses inside a judge prompt, and which one is
better; BaseReward's default training data. Built by the R1-Reward authors from MM-RLHF, VL-Feedback and RLHF-V.

Schema (dataset card https://huggingface.co/datasets/yifanzhang114/R1-Reward-RL, `dataset_info`; 17,261 train rows
in six parquet shards under data/): `question` (string), `message` (string), `answer` (list of strings), `image`
(string). What they hold (official README, github.com/yfzhang114/r1_reward, "Training Data Format"):
- `message`: a JSON-encoded chat, `[{"role": "user", "content": [{"type": "text", "text": <judge prompt>},
  {"type": "image", "image": <path>}]}]`, read with `json.loads` by openrlhf/trainer/ppo_utils/data_processor.py.
  The judge prompt is the repo's `make_conv_rm` template (README and inference/*/r1_reward.py):
  `... ###### [Question]:\\n{question}  \\n\\n###### [Response 1]:\\n{answer1}  \\n\\n###### [Response 2]:\\n{answer2}
  \\n\\n###### **Output Format (strictly follow):** ...`.
- `answer`: `["<answer>2</answer>"]`: the better response's number ("1" or "2"); the RL reward
  (openrlhf/models/remote_rm/math_verifier_mllm.py) compares the model's `<answer>` with it.
- `question`: the original user question.
- `image`: the image itself (the README asks to save it locally and point the message's image path at it). Its
  encoding is not documented: read here as base64 (plain or a `data:` URI), else as a path; a JSON list gives several.

Mapping: prompt = one user turn, the images (and the message's videos, as frame lists) first, then `question` (the
[Question] section of the judge prompt when `question` is empty); Response 1 and Response 2 are cut out of the judge
prompt and the one `answer` names is chosen. Images come from the `image` column, one per image part of the message
(a row whose message has no image or video part takes the column's images as they are); when the column is empty,
from the message's own paths, which are absolute paths on the authors' machines: give
`options: {strip_prefix: "/their/prefix/"}` to make them relative to the source's `image_root`. Rows have no id or
sub-source: id = `<file stem>-<row>`, category "". meta: `preferred` (1 or 2).

The README's training row (tests/fixtures/real/r1_reward/, its `//` annotations removed) confirms the row's keys
(`message`, `question`, `answer`; no `image` key), `message` as a JSON string of one user message with a text part
and an image part holding an absolute path, and `answer` as a one-string list; its judge prompt is elided in the
README ("... <evaluation prompt text> ..."), so that row itself is a counted `schema` fault here (no [Question] or
[Response 1] section to cut out), and the sections are confirmed from the inference code only.
Not confirmed: the `image` column's encoding (the card says only "string"; 2.8 GB for 17k rows means the image
data, not a path), whether any row is a video, and that every row uses exactly this judge template (rows whose
prompt lacks the [Response 1]/[Response 2] sections are refused with ValueError).
"""

import base64
import binascii
import json
import re

from rmlab.data.adapters.base import adapter, message_text
from rmlab.data.records import PreferencePair

SCHEMA = "question, message (JSON chat with the judge prompt), answer ['<answer>1|2</answer>'], image (str)"
_ANSWER = re.compile(r"<answer>\s*([12])\s*</answer>")
_BASE64 = re.compile(r"[A-Za-z0-9+/=\s]+")
_SECTION_END = re.compile(r"\s*#+\s*$")


def _section(text: str, start: int, marker: str, end_marker: str) -> tuple[str, int]:
    i = text.find(marker, start)
    if i < 0:
        raise ValueError(f"the judge prompt has no {marker} section")
    j = text.find(end_marker, i + len(marker))
    if j < 0:
        raise ValueError(f"the judge prompt has no {end_marker} after {marker}")
    return _SECTION_END.sub("", text[i + len(marker) : j]).strip(), j


def _responses(text: str) -> tuple[str, str, str]:
    """(question, response 1, response 2) cut out of the make_conv_rm judge prompt."""
    question, at = _section(text, 0, "[Question]:", "[Response 1]:")
    first, at = _section(text, at, "[Response 1]:", "[Response 2]:")
    second, _ = _section(text, at, "[Response 2]:", "**Output Format")
    return question, first, second


def _preferred(answer) -> int:
    if isinstance(answer, str):
        answer = [answer]
    if not isinstance(answer, list) or not answer or not isinstance(answer[0], str):
        raise TypeError(f"answer must be a list with one string like '<answer>1</answer>', not {answer!r:.80}")
    match = _ANSWER.search(answer[0])
    label = match.group(1) if match else answer[0].strip()
    if label not in ("1", "2"):
        raise ValueError(f"answer {answer[0]!r:.80} names neither response 1 nor 2")
    return int(label)


def _image_ref(value, ctx):
    """An image given as base64 text (plain or a data: URI), else a path; bytes and {bytes, path} pass through."""
    if value is None or value == "":
        raise ValueError("an image part without an image")
    if not isinstance(value, str):
        return ctx.image(value)
    text = value.strip()
    if text.startswith("data:"):
        return base64.b64decode(text.partition(",")[2])
    if len(text) >= 64 and _BASE64.fullmatch(text):
        try:
            return base64.b64decode(text, validate=False)
        except (binascii.Error, ValueError):
            pass
    prefix = ctx.options.get("strip_prefix")
    if prefix and text.startswith(prefix):
        text = text[len(prefix) :].lstrip("/")
    return ctx.image(text)


def _column_images(value) -> list:
    if value is None or value == "" or value == []:
        return []
    if isinstance(value, str) and value.lstrip().startswith("["):
        value = json.loads(value)
    return value if isinstance(value, list) else [value]


def _chat(message) -> list[dict]:
    chat = json.loads(message) if isinstance(message, str) else message
    if isinstance(chat, dict):
        chat = [chat]
    if not isinstance(chat, list) or not all(isinstance(m, dict) and "content" in m for m in chat):
        raise TypeError("message must be a JSON list of {role, content} messages")
    return chat


@adapter("r1_reward", hub_id="yifanzhang114/R1-Reward-RL", modality="multimodal", schema=SCHEMA)
def r1_reward(row: dict, ctx):
    chat = _chat(row["message"])
    judge = "".join(message_text(m) for m in chat if m.get("role", "user") == "user")
    parsed_question, first, second = _responses(judge)
    question = row["question"] or parsed_question
    preferred = _preferred(row["answer"])
    parts = [p for m in chat if isinstance(m["content"], list) for p in m["content"] if isinstance(p, dict)]
    image_parts = [p for p in parts if p.get("type") == "image"]
    video_parts = [p for p in parts if p.get("type") == "video"]

    # the image column holds the message's images (one per image part); without it, the message's own paths
    column = _column_images(row.get("image"))  # absent in the README's training format (its message holds the paths)
    if column and (image_parts or video_parts) and len(column) != len(image_parts):
        raise ValueError(f"{len(column)} image(s) in the image column for {len(image_parts)} image part(s)")
    sources = column or [p.get("image") for p in image_parts]
    images = [_image_ref(v, ctx) for v in sources]
    videos = []
    for part in video_parts:
        frames = part.get("video")
        if not isinstance(frames, list) or not frames:
            raise ValueError("a video part must list its frames")
        videos.append([_image_ref(f, ctx) for f in frames])

    media = [{"type": "image"}] * len(images) + [{"type": "video"}] * len(videos)
    content = media + [{"type": "text", "text": question}] if media else question
    chosen, rejected = (first, second) if preferred == 1 else (second, first)
    yield PreferencePair(
        id=ctx.row_id,
        prompt=[{"role": "user", "content": content}],
        chosen=chosen,
        rejected=rejected,
        images=images,
        videos=videos,
        source="r1_reward",
        category="",
        meta={"preferred": preferred},
    )
