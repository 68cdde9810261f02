"""A vLLM server on a saved rmlab model, for as long as a job needs it.

`VLLMServer(model_dir, work_dir, cfg).start()` lays out the model the way vLLM reads one (`serving_dir`), starts
`vllm serve` (its OpenAI-compatible API server, with the token-in/token-out endpoints) from the vLLM environment
(`make vllm`: `.venv-vllm`, or `generation.python`) on a free port of 127.0.0.1, writes the server's log to
`work_dir/vllm_server.log`, and waits for `/health` up to `generation.start_timeout_s`; a server that exits or never
answers is an error naming the log and its last error line. The server runs under a keeper
(rmlab.generation.watchdog) that stops its whole process group when this process is gone, however it went
(a SIGKILLed job leaves no server behind); `stop()` (also at exit) stops it at once.
"""

from __future__ import annotations

import atexit
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import suppress
from pathlib import Path

from rmlab.errors import ConfigError, RmlabError

SERVED_NAME = "rmlab"
LOG_NAME = "vllm_server.log"
REPO = Path(__file__).resolve().parents[2]
# the CPU build's attention kernels (vllm/v1/attention/backends/cpu_attn.py, 0.32.0)
CPU_HEAD_SIZES = (32, 64, 80, 96, 112, 128, 160, 192, 224, 256, 512)
# A CPU server runs below the job's priority: after each batch its worker spins on its queue for a second
# (vllm/distributed/device_communicators/shm_broadcast.py, SpinCondition), which at the job's priority takes the job's
# own next step (a Critic-RM head's forward, a policy's update) down to a tenth of its speed on 2 cores; while the
# job waits on it, it has the cores whatever its priority.
CPU_NICENESS = 10
# rmlab's image-only processors (rmlab.models.processors) under the stock class vLLM builds instead
STANDARD_PROCESSORS = {
    "ImageOnlyQwen25VLProcessor": "Qwen2_5_VLProcessor",
    "ImageOnlyQwen2VLProcessor": "Qwen2VLProcessor",
    "ImageOnlyInternVLProcessor": "InternVLProcessor",
}


class GenerationError(RmlabError, RuntimeError):
    """The vLLM server could not start, or refused or failed a request; the message names its log."""


def vllm_python(gen) -> Path:
    """The vLLM environment's python: `generation.python`, else $RMLAB_VLLM_PYTHON, else the checkout's .venv-vllm."""
    path = Path(gen.python or os.environ.get("RMLAB_VLLM_PYTHON") or REPO / ".venv-vllm" / "bin" / "python")
    if not path.exists():
        raise ConfigError(
            f"generation.engine=vllm: no vLLM environment at {path}: run `make vllm` (or set generation.python)"
        )
    return path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_bind() -> str:
    """The CPU server's threads on every core this job may use ("0,1"): the job waits while the server generates
    (scoring and rollouts ask and wait), so the engine gets them all; vLLM's own `auto` binding keeps one core free
    for its API server, half of a 2-core job (measured here: LongCoT-GRM 0.89x hf with `auto`, 1.36x bound to both
    cores, 512-wide 8-layer model). $VLLM_CPU_OMP_THREADS_BIND, where set, wins."""
    return ",".join(str(c) for c in sorted(os.sched_getaffinity(0)))


def lower_autogroup(pid: int) -> None:
    """Where the kernel groups processes by session (sched_autogroup), a niceness counts only inside the group: the
    server's session (its own, for its keeper to stop it whole) gets CPU_NICENESS as a group."""
    with suppress(OSError):
        Path(f"/proc/{pid}/autogroup").write_text(f"{CPU_NICENESS}\n")


def _text_config(config: dict) -> dict:
    return config.get("text_config") or config.get("llm_config") or config


def check_servable(model_dir: Path, on_cpu: bool) -> None:
    """Refuse, in one line, a saved model that vLLM cannot serve: a LoRA adapter, a model without its LM head, a
    head size the CPU build has no attention kernel for."""
    meta = json.loads((model_dir / "rmlab_model.json").read_text())
    spec = meta.get("backbone", {})
    if "weights" not in spec:
        raise ConfigError(
            f"generation.engine=vllm: {model_dir} holds a LoRA adapter; vLLM serves merged weights (use engine=hf)"
        )
    config = json.loads((model_dir / spec["weights"] / "config.json").read_text())
    archs = config.get("architectures") or []
    if not any(a.endswith(("ForCausalLM", "ForConditionalGeneration")) for a in archs):
        raise ConfigError(f"generation.engine=vllm: {model_dir} is {archs}, not a model with an LM head to generate")
    text = _text_config(config)
    head = text.get("head_dim") or text["hidden_size"] // text["num_attention_heads"]
    if on_cpu and head not in CPU_HEAD_SIZES:
        raise ConfigError(
            f"generation.engine=vllm: {model_dir} has attention heads of size {head}; vLLM's CPU build runs "
            f"{list(CPU_HEAD_SIZES)} (a tiny model: scale.tiny.num_heads so that hidden_size / num_heads is one)"
        )


def serving_dir(model_dir: Path, out: Path) -> Path:
    """The saved model as one directory vLLM reads (`out`): the backbone's config and weights and the processor's
    files side by side (links), and, where a saved piece names a class vLLM does not know (rmlab's image-only
    processors), the standard one beside it."""
    meta = json.loads((model_dir / "rmlab_model.json").read_text())
    out.mkdir(parents=True, exist_ok=True)
    for old in out.iterdir():
        if old.is_symlink() or old.is_file():
            old.unlink()
    for part in (model_dir / meta["backbone"]["weights"], model_dir / "processor"):
        for f in sorted(part.iterdir()):
            if f.is_file():
                (out / f.name).symlink_to(f.resolve())
    proc_cfg = model_dir / "processor" / "processor_config.json"
    if proc_cfg.exists():
        data = json.loads(proc_cfg.read_text())
        data["processor_class"] = STANDARD_PROCESSORS.get(data.get("processor_class"), data.get("processor_class"))
        (out / "processor_config.json").unlink()
        (out / "processor_config.json").write_text(json.dumps(data, indent=2) + "\n")
        if isinstance(data.get("image_processor"), dict) and not (out / "preprocessor_config.json").exists():
            (out / "preprocessor_config.json").write_text(json.dumps(data["image_processor"], indent=2) + "\n")
    return out


def _last_error(log: Path) -> str:
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    for line in reversed(lines):
        if "Error" in line and "Found ulimit" not in line:
            return line.strip()[-300:]
    return lines[-1].strip()[-300:] if lines else ""


class VLLMServer:
    def __init__(self, model_dir: str | Path, work_dir: str | Path, gen, dtype: str, seed: int = 0,
                 weight_reload: bool = False, on_cpu: bool = True):  # fmt: skip
        self.model_dir, self.work_dir, self.gen, self.on_cpu = Path(model_dir), Path(work_dir), gen, on_cpu
        self.dtype, self.seed, self.weight_reload = dtype, seed, weight_reload
        self.log = self.work_dir / LOG_NAME
        self.port: int | None = None
        self.keeper: subprocess.Popen | None = None
        self.pid: int | None = None  # the API server's (and its process group's) id

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self, model: Path) -> list[str]:
        gen = self.gen
        cmd = [str(vllm_python(gen)), "-m", "vllm.entrypoints.openai.api_server", "--model", str(model),
               "--served-model-name", SERVED_NAME, "--host", "127.0.0.1", "--port", str(self.port),
               "--dtype", self.dtype, "--seed", str(self.seed), "--generation-config", "vllm",
               "--enable-scale-out", "--max-logprobs", "8"]  # fmt: skip
        if gen.eager:
            cmd.append("--enforce-eager")
        if self.on_cpu:
            # a seeded request whose prompt is prefilled in chunks makes the CPU build rewind its torch generator,
            # which CPU generators cannot do ("CPU Generator does not use offset"): prompts are prefilled whole
            cmd.append("--no-enable-chunked-prefill")
            cmd = ["nice", "-n", str(CPU_NICENESS), *cmd]  # before it forks: its engine and worker inherit it
        return cmd + [str(a) for a in gen.extra_args]

    def start(self, attempts: int = 3) -> VLLMServer:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        model = serving_dir(self.model_dir, self.work_dir / "served_model")
        for attempt in range(attempts):
            self.port = free_port()
            self._launch(model)
            try:
                self._wait_ready()
                return self
            except GenerationError as e:
                self.stop()
                if "address already in use" not in str(e).lower() or attempt == attempts - 1:
                    raise
        return self

    def _launch(self, model: Path) -> None:
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "VLLM_NO_USAGE_STATS": "1",
               "DO_NOT_TRACK": "1", "VLLM_CPU_KVCACHE_SPACE": str(max(1, round(float(self.gen.kv_cache_gb))))}  # fmt: skip
        if self.on_cpu:
            env.setdefault("VLLM_CPU_OMP_THREADS_BIND", cpu_bind())
        if self.weight_reload:
            env["VLLM_SERVER_DEV_MODE"] = "1"  # /collective_rpc (reload_weights) and /reset_prefix_cache
        pidfile = self.work_dir / "vllm_server.pid"
        pidfile.unlink(missing_ok=True)
        with open(self.log, "ab") as log:
            log.write(f"\n[rmlab] {' '.join(self.command(model))}\n".encode())
            log.flush()
            # stdin: a pipe whose write end only this process holds; the keeper stops the server at its end
            self.keeper = subprocess.Popen(
                [sys.executable, str(Path(__file__).with_name("watchdog.py")), str(pidfile), "--",
                 *self.command(model)],
                stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=self.work_dir,
                start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + 30
        while not pidfile.exists() and self.keeper.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        self.pid = int(pidfile.read_text()) if pidfile.exists() else None
        if self.on_cpu and self.pid is not None:
            lower_autogroup(self.pid)
        atexit.register(self.stop)

    def _wait_ready(self) -> None:
        timeout = float(self.gen.start_timeout_s)
        deadline = time.monotonic() + timeout
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        while True:
            if self.keeper.poll() is not None:
                raise GenerationError(
                    f"the vLLM server exited before it was ready (see {self.log}): {_last_error(self.log)}"
                )
            try:
                with opener.open(f"{self.url}/health", timeout=5) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                raise GenerationError(
                    f"the vLLM server did not answer /health within generation.start_timeout_s={timeout:g} "
                    f"(see {self.log}): {_last_error(self.log)}"
                )
            time.sleep(1.0)

    def stop(self) -> None:
        keeper, self.keeper = self.keeper, None
        if keeper is None:
            return
        if keeper.poll() is None:
            keeper.stdin.close()  # the keeper's end of file: it stops the server's group
            try:
                keeper.wait(timeout=30)
            except subprocess.TimeoutExpired:
                keeper.kill()
                keeper.wait()
        atexit.unregister(self.stop)

    def __enter__(self) -> VLLMServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
