"""Generation through a vLLM server, with the contract of rmlab.paradigms.tokens.generate (token ids in, token ids
out), so the paradigms and the policy stage read its answers exactly as they read Hugging Face `generate`'s.

Every sequence is one request to the server's token-in/token-out endpoint (`/inference/v1/generate`): its prompt
ids and what opens the answer, its images inline (PNG data URLs), and `n` = samples, so the prefix and the images
are encoded once for all of a sequence's samples; requests go `generation.concurrency` at a time and the server
batches them. Greedy is temperature 0; samples are drawn at `temperature` from the full distribution (no top-k,
top-p or min-p: the server runs with `--generation-config vllm`), seeded per sequence from the call's seed and the
sequence's content (rmlab.paradigms.tokens.row_seed), so a sequence's samples do not depend on its batch. The media
tokens are never generated (a bias of -100, the most the server allows), the stop tokens end a completion and it is
cut as `generate` cuts it. The server's prompt ids must equal rmlab's (an error otherwise): the images are sent as
the very pixels rmlab's processor produced (recovered exactly from the patches) and each image's run of placeholder
tokens as one token, which the server's processor expands by the same image grid.

GRM's label probabilities are the server's log-probabilities of the two label tokens at the answer's first position
(renormalized over the two, as the hf engine renormalizes its logits).
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import math
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from pathlib import Path

import torch

from rmlab.errors import ConfigError
from rmlab.generation.server import SERVED_NAME, GenerationError, VLLMServer, _last_error, check_servable
from rmlab.models.families import FAMILIES
from rmlab.paradigms.tokens import media_token_ids, row_seed

MEDIA_BIAS = -100.0  # the server clamps logit biases to [-100, 100]


def qwen_images(vision: dict[str, torch.Tensor], image_processor) -> list:
    """The images (PIL, RGB) a Qwen-VL image processor turned into `pixel_values` and `image_grid_thw`: its
    patchification undone and its rescaling and normalization inverted to the uint8 pixels it resized to (which it
    reproduces exactly when it processes them again: their size already fits its resize)."""
    from PIL import Image

    ip = image_processor
    m, p, t_patch = int(ip.merge_size), int(ip.patch_size), int(ip.temporal_patch_size)
    mean = torch.tensor(ip.image_mean, dtype=torch.float64).view(3, 1, 1)
    std = torch.tensor(ip.image_std, dtype=torch.float64).view(3, 1, 1)
    images, offset = [], 0
    pixels = vision["pixel_values"].double()
    for t, h, w in vision["image_grid_thw"].tolist():
        n = t * h * w
        x = pixels[offset : offset + n].reshape(t, h // m, w // m, m, m, 3, t_patch, p, p)
        offset += n
        # the processor's transpose(0, 3, 6, 4, 7, 2, 1, 5, 8) of (t, T, C, h/m, m, p, w/m, m, p), inverted
        x = x.permute(0, 6, 5, 1, 3, 7, 2, 4, 8).reshape(t * t_patch, 3, h * p, w * p)[0]
        x = (x * std + mean) / float(ip.rescale_factor)
        array = x.round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()
        images.append(Image.fromarray(array, "RGB"))
    return images


def _data_url(image) -> str:
    buf = io.BytesIO()
    image.save(buf, format="PNG", compress_level=1)  # lossless either way; level 1 is the fast one
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


class VLLMEngine:
    """A running server and what rmlab needs to talk to it about one model."""

    def __init__(self, server: VLLMServer, gen, image_processor=None, image_token_id: int | None = None,
                 media_ids: list[int] | None = None):  # fmt: skip
        self.server, self.gen = server, gen
        self.image_processor, self.image_token_id = image_processor, image_token_id
        self.media_ids = media_ids or []
        self.opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        self.requests = 0  # answered, for the tests and the benchmark
        self._lock = threading.Lock()
        self._urls: dict[str, list[str]] = {}

    # ------------------------------------------------------------------------------------------------ transport
    def post(self, path: str, body: dict | None = None) -> dict | None:
        data = json.dumps(body or {}).encode()
        req = urllib.request.Request(self.server.url + path, data, {"Content-Type": "application/json"})
        try:
            with self.opener.open(req, timeout=float(self.gen.request_timeout_s)) as r:
                raw = r.read()
        except urllib.error.HTTPError as e:
            detail = e.read().decode(errors="replace")
            with suppress(ValueError, KeyError, TypeError):
                detail = json.loads(detail)["error"]["message"]
            raise GenerationError(
                f"the vLLM server refused {path} ({e.code}): {detail} (log: {self.server.log})"
            ) from None
        except (urllib.error.URLError, OSError) as e:
            raise GenerationError(
                f"the vLLM server at {self.server.url} failed {path}: {e} (log: {self.server.log}: "
                f"{_last_error(self.server.log)})"
            ) from None
        with self._lock:
            self.requests += 1
        return json.loads(raw) if raw.strip() else None

    def _map(self, fn, items: list) -> list:
        if not items:
            return []
        workers = max(1, min(int(self.gen.concurrency), len(items)))
        if workers == 1:
            return [fn(x) for x in items]
        with ThreadPoolExecutor(workers) as pool:
            return list(pool.map(fn, items))

    # --------------------------------------------------------------------------------------------------- prompts
    def prompt(self, seq) -> tuple[list[int], list[dict] | None]:
        """(the prompt's token ids as the server takes them, its images as content parts)."""
        ids = list(seq.prompt_ids) + list(seq.opened)
        if not seq.vision:
            return ids, None
        if "image_grid_thw" not in seq.vision or self.image_processor is None or self.image_token_id is None:
            raise ConfigError(
                "generation.engine=vllm: images are sent for the Qwen-VL families only (their pixels are recovered "
                f"from the patches); this model's inputs have {sorted(seq.vision)}: use generation.engine=hf"
            )
        key = hashlib.blake2b(seq.vision["pixel_values"].detach().cpu().contiguous().numpy().tobytes(),
                              digest_size=16).hexdigest()  # fmt: skip
        urls = self._urls.get(key)  # a pair's two orders, a prompt's samples: the same images, made once
        if urls is None:
            urls = [_data_url(im) for im in qwen_images(seq.vision, self.image_processor)]
            if len(self._urls) > 4096:
                self._urls.clear()
            self._urls[key] = urls
        tid, collapsed = self.image_token_id, []
        for i, t in enumerate(ids):
            if t == tid and i > 0 and ids[i - 1] == tid:
                continue  # the server expands each image's one placeholder by the image's grid
            collapsed.append(t)
        return collapsed, [{"type": "image_url", "url": url} for url in urls]

    def _request(self, seq, sampling: dict) -> dict:
        ids, parts = self.prompt(seq)
        body = {"model": SERVED_NAME, "token_ids": ids, "sampling_params": {"detokenize": False, **sampling},
                "return_token_ids": True}  # fmt: skip
        if parts:
            body["content_parts"] = parts
        out = self.post("/inference/v1/generate", body)
        expected = list(seq.prompt_ids) + list(seq.opened)
        if out.get("prompt_token_ids") is not None and list(out["prompt_token_ids"]) != expected:
            raise GenerationError(
                f"the vLLM server built another prompt than rmlab's ({len(out['prompt_token_ids'])} tokens against "
                f"{len(expected)}): the served model's processor differs from the saved one (log: {self.server.log})"
            )
        return out

    # ------------------------------------------------------------------------------------------------ generation
    def generate(self, seqs, pad_id: int, stops: list[int], max_new_tokens: int, samples: int = 1,
                 temperature: float = 1.0, seed: int = 0, keep_stop: bool = False) -> list[list[list[int]]]:  # fmt: skip
        """rmlab.paradigms.tokens.generate's contract, through the server."""
        return self.generate_with_logprobs(seqs, stops, max_new_tokens, samples, temperature, seed, keep_stop)[0]

    def generate_with_logprobs(self, seqs, stops: list[int], max_new_tokens: int, samples: int = 1,
                               temperature: float = 1.0, seed: int = 0, keep_stop: bool = False):  # fmt: skip
        """(completions as `generate` returns them, the server's log-probability of each of their tokens under the
        model's own distribution (not the temperature's): NaN where it gave none)."""
        sampling_base = {
            "n": int(samples),
            "max_tokens": int(max_new_tokens),
            "temperature": 0.0 if samples == 1 else float(temperature),
            "stop_token_ids": list(stops),
            "logprobs": 0,
        }
        if self.media_ids:
            sampling_base["logit_bias"] = {str(t): MEDIA_BIAS for t in self.media_ids}

        def one(seq):
            sampling = {**sampling_base, "seed": row_seed(seed, seq, 0) & ((1 << 62) - 1)}
            choices = sorted(self._request(seq, sampling)["choices"], key=lambda c: c["index"])
            tokens, logps = [], []
            for c in choices:
                ids = list(c["token_ids"])
                lp = [e.get("logprob", math.nan) for e in (c.get("logprobs") or {}).get("content") or []]
                lp += [math.nan] * (len(ids) - len(lp))
                stop = c.get("stop_reason")
                if c.get("finish_reason") == "stop" and isinstance(stop, int) and (not ids or ids[-1] not in stops):
                    ids.append(stop)
                    lp.append(math.nan)
                end = next((i + int(keep_stop) for i, t in enumerate(ids) if t in stops), len(ids))
                tokens.append(ids[:end])
                logps.append(lp[:end])
            return tokens, logps

        results = self._map(one, list(seqs))
        return [r[0] for r in results], [r[1] for r in results]

    def label_probabilities(self, seqs, label_ids: list[int]) -> torch.Tensor:
        """(N, 2): P(label 1), P(label 2) at the first answer position of each sequence, renormalized over the two."""
        filler = next(t for t in range(len(label_ids) + 1) if t not in label_ids)
        asked = [*label_ids, filler]  # the server lists the sampled token first, then as many asked as fit

        def one(seq):
            sampling = {"n": 1, "max_tokens": 1, "temperature": 0.0, "logprobs": len(asked),
                        "logprob_token_ids": asked}  # fmt: skip
            content = self._request(seq, sampling)["choices"][0]["logprobs"]["content"][0]
            found = {int(e["token_id"]): float(e["logprob"]) for e in content.get("top_logprobs") or []}
            found.setdefault(int(content["token_id"]), float(content["logprob"]))
            missing = [t for t in label_ids if t not in found]
            if missing:
                raise GenerationError(f"the vLLM server gave no log-probability for label token(s) {missing}")
            return [found[t] for t in label_ids]

        logps = torch.tensor(self._map(one, list(seqs)), dtype=torch.float64)
        return logps.softmax(-1).float()

    # ------------------------------------------------------------------------------------------------- weights
    def reload(self, weights_dir: Path) -> float:
        """Load the weights saved in `weights_dir` (Hugging Face format) into the server, in place, and drop its
        prefix cache (computed with the old weights); the seconds it took."""
        started = time.perf_counter()
        self.post("/collective_rpc", {"method": "reload_weights", "kwargs": {"weights_path": str(weights_dir)}})
        self.post("/reset_prefix_cache")
        return time.perf_counter() - started

    def sync_from(self, module, work_dir: Path) -> float:
        """Save `module`'s backbone (an rmlab model) as Hugging Face weights under `work_dir` and reload them."""
        import shutil

        target, tmp = work_dir / "weights", work_dir / "weights.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        module.generative_model().save_pretrained(tmp)
        shutil.rmtree(target, ignore_errors=True)
        tmp.rename(target)
        return self.reload(target)

    def close(self) -> None:
        self.server.stop()


def generates(cfg) -> bool:
    """Does scoring with this config's paradigm ask the engine anything (generation, or GRM's label probabilities)?"""
    p = cfg.paradigm
    name = str(p.name)
    return name in ("grm", "longcot", "sft") or (name == "critic" and str(p.critique) == "generate")


def check_one_process(processes: int) -> None:
    if processes > 1:
        raise ConfigError(
            f"generation.engine=vllm runs in a job of one process (this one has {processes}): one server answers it"
        )


def _dtype(gen, on_gpu: bool, backbone_dtype: str) -> str:
    if str(gen.dtype) != "auto":
        return str(gen.dtype)
    return str(backbone_dtype) if on_gpu else "float32"


def start_engine(model, processor, model_dir: Path, work_dir: Path, cfg, weight_reload: bool = False) -> VLLMEngine:
    """A server on the saved model `model_dir` (logs under `work_dir`), attached to `model`: from now on
    rmlab.paradigms.tokens.generate (and GRM's scoring) on `model` go to it."""
    gen = cfg.generation
    on_gpu = torch.cuda.is_available()
    check_servable(Path(model_dir), on_cpu=not on_gpu)
    server = VLLMServer(model_dir, work_dir, gen, _dtype(gen, on_gpu, cfg.backbone.dtype), int(cfg.run.seed),
                        weight_reload=weight_reload, on_cpu=not on_gpu)  # fmt: skip
    print(f"[rmlab] starting the vLLM server on {model_dir} (log: {server.log})", flush=True)
    started = time.perf_counter()
    server.start()
    print(f"[rmlab] vLLM server ready at {server.url} in {time.perf_counter() - started:.0f} s", flush=True)
    generative = model.generative_model()
    image_processor = getattr(processor, "image_processor", None)
    image_token_id = getattr(generative.config, "image_token_id", None)
    engine = VLLMEngine(server, gen, image_processor, image_token_id, media_token_ids(generative))
    model.generation_engine = engine
    return engine


@contextmanager
def generation_engine(cfg, model, model_dir: Path, work_dir: Path, weight_reload: bool = False,
                      score_cfg=None, processes: int = 1) -> Iterator[VLLMEngine | None]:  # fmt: skip
    """`start_engine` for the block when `cfg.generation.engine` is vllm and the paradigm (of `score_cfg`, default
    `cfg`) asks the engine anything; stopped and detached after it. Otherwise nothing."""
    if str(cfg.generation.engine) != "vllm" or not generates(score_cfg or cfg):
        yield None
        return
    check_one_process(processes)
    engine = start_engine(model, _processor_of(model_dir), model_dir, work_dir, cfg, weight_reload)
    try:
        yield engine
    finally:
        engine.close()
        if getattr(model, "generation_engine", None) is engine:
            del model.generation_engine


def _processor_of(model_dir: Path):
    meta = json.loads((Path(model_dir) / "rmlab_model.json").read_text())
    return FAMILIES.get(meta["family"]).load_processor(str(Path(model_dir) / "processor"))
