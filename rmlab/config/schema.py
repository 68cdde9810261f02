"""Typed schemas for the config tree, registered in Hydra's ConfigStore.

Every group file in `conf/` is merged onto one of these dataclasses, so a misspelled key fails at composition
("Key 'activaton' not in 'HeadConfig'") and an enum field names its valid values.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from hydra.core.config_store import ConfigStore


class Paradigm(StrEnum):
    naive = "naive"  # scalar head, Bradley-Terry loss
    critic = "critic"  # critique, then a scalar head (MM-RLHF)
    grm = "grm"  # generative judge answering "1" or "2" (Seed-1.5-VL)
    longcot = "longcot"  # <think> reasoning, then <answer> (R1-Reward)
    sft = "sft"  # a policy fine-tuned on the chosen responses (the policy stage's warm start)


class Critique(StrEnum):
    generate = "generate"  # the model writes the critique it is scored with
    ground_truth = "ground_truth"  # the data's critique is scored (an upper bound)
    none = "none"  # no critique in training or scoring: the head reads the response alone


class Activation(StrEnum):
    none = "none"
    tanh = "tanh"
    silu = "silu"
    relu = "relu"


class Family(StrEnum):
    qwen2_5_vl = "qwen2_5_vl"
    qwen2_vl = "qwen2_vl"
    internvl3 = "internvl3"
    internvl2 = "internvl2"
    qwen2_5 = "qwen2_5"
    qwen3 = "qwen3"


class DType(StrEnum):
    float32 = "float32"
    bfloat16 = "bfloat16"
    float16 = "float16"


class TrackingMode(StrEnum):
    offline = "offline"
    online = "online"
    disabled = "disabled"


class PairLayout(StrEnum):
    concat = "concat"  # 2B rows: [prompt | chosen], [prompt | rejected] (TRL, OpenRLHF)
    shared_prefix = "shared_prefix"  # B rows: [prompt | chosen | rejected], prompt once, 4D mask


class Weighting(StrEnum):
    size = "size"  # a source is drawn in proportion to its pair count (times its weight): the paper's concatenation
    uniform = "uniform"  # every source drawn equally often (times its weight), whatever its size


class InvalidPolicy(StrEnum):
    skip = "skip"  # count and drop a bad pair (counts per reason in the run's summary)
    fail = "fail"  # stop at the first bad pair, naming its file and row


class EnsembleWeighting(StrEnum):
    average = "average"  # mean of the members' scores
    accuracy = "accuracy"  # weights from each member's accuracy on the validation pairs
    confidence = "confidence"  # weights from each member's mean chosen-minus-rejected margin there


class EnsembleMethod(StrEnum):
    average = "average"
    accuracy = "accuracy"
    confidence = "confidence"
    route = "route"  # text-only prompts to `text_member`, the rest to the members (combined by `combine`)


class Schedule(StrEnum):
    cosine = "cosine"  # linear warmup, then cosine decay to zero at the last step
    constant = "constant"  # linear warmup, then the learning rate as set


@dataclass
class ParadigmConfig:
    name: Paradigm = Paradigm.naive
    # scalar heads (naive, critic)
    center_coef: float = 0.0  # reward centering weight lambda in lambda * mean((r_w + r_l)^2)
    length_norm: bool = False  # score r / log(len + 1), len = response tokens
    # critic
    critique: Critique = Critique.generate  # what the head scores at evaluation (training always uses the data's)
    bt_weight: float = 1.0  # weight of the pairwise loss on the head
    lm_weight: float = 1.0  # weight of the critique's language-modelling loss
    # what the model writes when scoring (critic's critique, longcot's reasoning)
    max_new_tokens: int = 64
    samples: int = 1  # critic: critiques whose scores are averaged; longcot: votes (R1-Reward's Voting@15: 15)
    temperature: float = 1.0  # sampling temperature when samples > 1 (one sample is greedy)
    # judges (grm, longcot)
    both_orders: bool = True  # read each pair in both orders and combine; false: one order, fixed by the pair id
    instruction: str | None = None  # the judge's instruction; null: the paradigm's own


@dataclass
class HeadConfig:
    layers: int = 2
    activation: Activation = Activation.silu
    width: int | None = None  # hidden width of the MLP; null = the backbone's hidden size
    dropout: float = 0.0


@dataclass
class LoraConfig:
    enabled: bool = False
    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])


@dataclass
class BackboneConfig:
    family: Family = Family.qwen2_5_vl
    hub_ids: dict[str, str] = field(default_factory=dict)  # scale name -> hub id
    path: str | None = None  # a local checkpoint directory; overrides the hub id
    vision_tower: list[str] = field(default_factory=list)  # module prefixes frozen by freeze_vision
    trust_remote_code: bool = False
    attn_implementation: str = "sdpa"
    dtype: DType = DType.float32
    freeze_vision: bool = False
    gradient_checkpointing: bool = False
    lora: LoraConfig = field(default_factory=LoraConfig)


@dataclass
class TinyConfig:
    """Sizes of a tiny backbone (`scale=tiny`); `build_tiny` takes this directly."""

    hidden_size: int = 64
    intermediate_size: int = 128
    num_layers: int = 2
    num_heads: int = 4
    num_kv_heads: int = 2
    vision_hidden_size: int = 32
    vision_layers: int = 2
    max_position_embeddings: int = 1024


@dataclass
class ScaleConfig:
    name: str = "tiny"
    tiny: TinyConfig = field(default_factory=TinyConfig)  # sizes used when name == tiny


@dataclass
class DataSource:
    name: str = "???"
    adapter: str = "???"  # a registered dataset adapter (rmlab.data.adapters)
    dataset: str | None = None  # a key of `datasets`: where the data lives (path, image_root, options)
    path: str | None = None  # or directly: a local file, a folder of parquet shards, a hub id, or `hub`
    image_root: str | None = None  # folder or .zip/.tar archive that the rows' relative image paths are under
    weight: float = 1.0  # pairs taken = round(pairs * weight): 0.5 a seeded half, 2.0 every pair twice
    max_pairs: int | None = None  # cap on pairs taken from this source (after the weight)
    size: int | None = None  # rows, for weighting=size where the source cannot say (a hub stream without split sizes)
    options: dict[str, Any] = field(default_factory=dict)  # adapter parameters, e.g. {min_gap: 4} for Ultra-Hard


@dataclass
class SynthSpec:
    """The synthetic testbed (rmlab.testbed, `rmlab data synth`): sizes per split (train, test, val), image side, seed."""

    seed: int = 0
    mm_train: int = 2000
    mm_test: int = 400
    text_train: int = 2000
    text_test: int = 400
    mm_val: int = 500
    text_val: int = 500
    image_size: int = 56


@dataclass
class SynthConfig(SynthSpec):
    dir: str = "???"  # where the testbed lives; written there when missing


@dataclass
class DatasetLocation:
    path: str = "hub"  # `hub` (the adapter's hub id), a hub id, a local file, or a folder of parquet shards
    image_root: str | None = None  # folder or archive the rows' relative image paths are under
    options: dict[str, Any] = field(default_factory=dict)  # adapter options that depend on the copy (e.g. mmpr root)


@dataclass
class DataMixConfig:
    name: str = "???"
    train: list[DataSource] = field(default_factory=list)
    test: list[DataSource] = field(default_factory=list)  # held-out sets scored when training ends
    val: list[DataSource] = field(default_factory=list)  # held-out pairs for choices after training (ensembles)
    synth: SynthConfig | None = None
    val_pairs: int = 200  # pairs split off the training data for validation during training
    # pairs longer than this are reported (per source) and skipped, never cut: a prompt with one image at the
    # default budget (<= 1280 Qwen tokens, <= 7 InternVL tiles = 1794 tokens) plus two long answers fits
    max_length: int = 4096
    max_image_pixels: int = 4096 * 4096  # larger images are refused from their header (decompression bombs)
    # the image budget, applied to the backbone's processor (saved with the model, so benchmarks use it too):
    max_pixels: int = 1280 * 28 * 28  # Qwen-VL: images resized (smart_resize) to at most this many pixels
    min_pixels: int = 4 * 28 * 28  # Qwen-VL: and at least this many (the processor's own floor: no upscaling)
    max_tiles: int = 6  # InternVL: at most this many 448px tiles per image (plus a thumbnail when > 1)
    on_invalid: InvalidPolicy = InvalidPolicy.skip
    streaming: bool = False  # read, check and encode pairs as training consumes them (mixes too large to hold)
    stream_buffer: int = 256  # rows of a source shuffled together in a streamed mix (a window: resumable exactly)
    weighting: Weighting = Weighting.size  # how a streamed mix draws its sources (weights multiply either way)
    workers: int = 2  # loader processes per training process reading a streamed mix (0: read in the training one)
    seed: int = 0


@dataclass
class EnsembleConfig:
    """The ensemble stage (stage=ensemble): trained reward models scored as one (rmlab.eval.ensemble)."""

    method: EnsembleMethod = EnsembleMethod.average
    members: list[str] = field(default_factory=list)  # run directories, model directories or run signatures
    text_member: str | None = None  # route: the reward model that scores text-only prompts
    combine: EnsembleWeighting = EnsembleWeighting.average  # route: how the other members combine
    standardize: bool = True  # z-score each member on the validation pairs before combining (false: raw scores)
    val_pairs: int = 1000  # validation pairs, drawn evenly across the data_mix.val sources


class StrategyName(StrEnum):
    auto = "auto"  # fsdp for every scale but tiny; ddp at tiny
    ddp = "ddp"  # every process holds the whole model (fp32), gradients all-reduced
    fsdp = "fsdp"  # FSDP2: parameters, gradients and optimizer state sharded over the processes


@dataclass
class RunConfig:
    """What every stage reads: the seed, and how a run uses its machine, saves and shows progress."""

    seed: int = 0
    deterministic: bool = True
    strategy: StrategyName = StrategyName.auto  # how a model spreads over the job's processes (rmlab.runtime.strategy)
    offload: bool = False  # fsdp: parameters, gradients and optimizer state in CPU memory between uses
    threads: int = 0  # torch threads; 0 = what SLURM allots or all cores
    save_every: int = 200  # checkpoint every N steps (0 = only at the end)
    keep_checkpoints: int = 2
    progress: bool = True


@dataclass
class TrainConfig:
    """The reward-model stage's optimization (and the fine-tuning of stage=selfcompare)."""

    lr: float = 3e-4
    weight_decay: float = 0.0
    warmup_ratio: float = 0.05
    schedule: Schedule = Schedule.cosine
    batch_size: int = 8  # pairs per micro-batch
    grad_accum: int = 1
    pair_layout: PairLayout = PairLayout.shared_prefix  # how a pair becomes model input; same scores either way
    max_steps: int = 1000  # optimizer steps
    max_grad_norm: float = 1.0
    eval_every: int = 200  # validation accuracy every N steps (0 = only at the end)
    init_from: str | None = None  # start from this run's trained weights (run dir, model dir or signature)


@dataclass
class BenchmarkLocation:
    path: str | None = None  # the released file (or `hub` where the benchmark is on the hub)
    image_root: str | None = None  # folder or archive its image paths are under
    options: dict[str, Any] = field(default_factory=dict)  # non-official conventions (e.g. {unparseable: wrong})


class GenerationEngine(StrEnum):
    hf = "hf"  # Hugging Face `generate` in the run's own process
    vllm = "vllm"  # a vLLM server started on the saved model (rmlab.generation; `make vllm` builds its environment)


@dataclass
class GenerationConfig:
    """How the critic, GRM and LongCoT paradigms and the policy stage generate (rmlab.generation). Never part of a
    signature: a run trained or scored with one engine is scored again with the other under the same name."""

    engine: GenerationEngine = GenerationEngine.hf
    python: str | None = None  # the vLLM environment's python; null: $RMLAB_VLLM_PYTHON, else .venv-vllm/bin/python
    sync_every: int = 1  # policy stage: optimizer steps between reloads of the policy's weights into the server
    start_timeout_s: float = 900.0  # how long the server may take to answer /health
    request_timeout_s: float = 600.0  # one request's limit
    concurrency: int = 64  # requests in flight at once (the server batches them)
    kv_cache_gb: float = 1.0  # the CPU build's KV cache (VLLM_CPU_KVCACHE_SPACE)
    eager: bool = True  # --enforce-eager: no torch.compile warm-up (minutes on a CPU; CUDA graphs off on a GPU)
    dtype: str = "auto"  # auto: float32 on a CPU (as the hf engine scores there), backbone.dtype on a GPU
    extra_args: list[str] = field(default_factory=list)  # more `vllm serve` arguments


@dataclass
class EvalConfig:
    model: str | None = None  # `rmlab eval`: a run directory or a saved model directory
    data: str | None = None  # `rmlab eval`: a preference file
    adapter: str | None = None  # its dataset adapter
    out: str | None = None  # where eval/<set>/ goes; default: the run (or model) directory
    batch_size: int = 32
    benchmarks: list[str] = field(default_factory=list)  # scored after training and by `rmlab eval`
    bootstrap: int = 1000  # resamples for each headline metric's 95% interval (0: none)


@dataclass
class TrackingConfig:
    mode: TrackingMode = TrackingMode.offline
    project: str = "rmlab"
    entity: str | None = None


class LauncherName(StrEnum):
    inline = "inline"  # one job after another in this process
    local = "local"  # submitit subprocesses on this machine
    slurm = "slurm"  # sbatch arrays through submitit


@dataclass
class LauncherConfig:
    """Where and with what resources a sweep's jobs run (rmlab sweep submits through submitit directly)."""

    name: LauncherName = LauncherName.inline
    timeout_min: int = 240
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    nodes: int = 1
    tasks_per_node: int = 1  # processes per node: one per GPU for multi-GPU training (torch.distributed)
    gpus_per_node: int = 0
    gpu_mem_gb: float = 80.0  # one GPU's memory (GiB): what `rmlab plan` checks each grid point against
    cpus_per_task: int = 2
    mem_gb: int | None = None
    array_parallelism: int = 256  # jobs of one array running at once
    max_array_size: int = 1000  # the cluster's MaxArraySize - 1: larger sweeps are split into several arrays
    signal_delay_s: int = 120  # SLURM signals this long before the time limit: a checkpoint, then a requeue
    max_num_timeout: int = 3  # requeues after a timeout (preemptions are always requeued)
    setup: list[str] = field(default_factory=list)  # shell lines run before the job (module load, conda activate)
    additional_parameters: dict[str, Any] = field(default_factory=dict)  # any other sbatch option
    local_parallelism: int = 0  # local: jobs at a time (0: cores // cpus_per_task)


class Stage(StrEnum):
    """What a run does; each stage reads its own config node (rmlab.config.stages says which)."""

    reward_model = "reward_model"  # train a reward model (or fine-tune a policy: paradigm=sft): the default
    rl = "rl"  # train a policy with rewards (rmlab.rl)
    selfcompare = "selfcompare"  # SkyMath-style self-compare fine-tuning of a policy (our reading; rmlab.train)
    ensemble = "ensemble"  # fit and score an ensemble of trained reward models (rmlab.eval.ensemble)


class RLAlgorithm(StrEnum):
    grpo = "grpo"
    dapo = "dapo"
    gtpo = "gtpo"
    grpo_s = "grpo_s"


class RewardKind(StrEnum):
    rule = "rule"  # 1 on an exact match with the ground truth, else 0
    model = "model"  # a trained reward model's score
    hybrid = "hybrid"  # 1 on a match, else sigmoid(reward model)
    pairwise = "pairwise"  # R1-Reward: each rollout against every other, judged, summed


class LossAgg(StrEnum):
    token_mean = "token_mean"  # every response token of the batch weighs the same (DAPO)
    seq_mean_token_mean = "seq_mean_token_mean"  # each sequence's token mean, averaged (GRPO's original)


class RewardTransform(StrEnum):
    raw = "raw"
    sigmoid = "sigmoid"


class GTPONorm(StrEnum):
    joint_group = "joint_group"  # z-score over every active token of the group (signs kept)
    separate_group = "separate_group"  # correct and incorrect tokens apart, within the group (public implementations)
    separate_batch = "separate_batch"  # apart, pooled over the batch (the verl fork)


@dataclass
class GTPOConfig:
    alpha1: float = 0.9  # weight of the outcome reward (alpha1 + alpha2 = 1 conserves the reward per position)
    alpha2: float = 0.1  # weight of the entropy-shaped bonus
    adv_norm: GTPONorm = GTPONorm.joint_group


@dataclass
class GRPOSConfig:
    beta1: float = 0.9
    beta2: float = 0.1


@dataclass
class RLConfig:
    """The policy stage (stage=rl): rollouts of `policy` on the data mix's prompts, rewards, advantages, updates."""

    algorithm: RLAlgorithm = RLAlgorithm.grpo
    policy: str | None = None  # the starting policy: an SFT run (paradigm=sft) dir or signature; null: the backbone
    reward: RewardKind = RewardKind.rule
    reward_model: str | None = None  # model / hybrid / pairwise: a trained rmlab model (run dir or signature)
    reward_transform: RewardTransform = RewardTransform.sigmoid  # how a model's score becomes the reward
    steps: int = 50  # policy updates
    lr: float = 1e-4  # constant
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    prompts_per_step: int = 8
    group_size: int = 8  # rollouts per prompt (G)
    max_new_tokens: int = 16
    temperature: float = 1.0
    clip_low: float = 0.2
    clip_high: float = 0.2  # DAPO's clip-higher: 0.28
    loss_agg: LossAgg = LossAgg.token_mean
    kl_coef: float = 0.0  # KL(policy || starting policy), k3 estimate
    ppo_epochs: int = 1  # passes over each rollout batch
    mini_batches: int = 1  # optimizer steps per pass
    stats_rows: int = 32  # sequences per forward when recording log-probs and entropies (bounds the logits' memory)
    eps: float = 1e-6
    norm_by_std: bool = True  # false: Dr. GRPO (r - mean)
    correct_threshold: float = 0.5  # gtpo / grpo_s / dynamic sampling: a rollout is correct above this reward
    dynamic_sampling: bool = False  # DAPO: drop groups whose rewards are all equal, sample more prompts instead
    max_gen_batches: int = 4  # dynamic sampling: rollout batches tried per step at most
    overlong_buffer: int = 0  # DAPO: the last this-many tokens before max_new_tokens are penalized linearly
    overlong_penalty: float = 1.0
    eval_prompts: int = 200  # held-out prompts scored (greedy) at the end
    gtpo: GTPOConfig = field(default_factory=GTPOConfig)
    grpo_s: GRPOSConfig = field(default_factory=GRPOSConfig)


@dataclass
class SelfCompareConfig:
    """SkyMath's self-compare fine-tuning as we read it (the paper's body was not available: an unverified recipe).
    The policy answers the mix's training questions; each answer is compared with the reference in a second turn,
    and the comparison plus the corrected answer become SFT data, trained on (with `train`) from that policy."""

    policy: str | None = None  # the policy: an SFT run (paradigm=sft) dir or signature
    max_new_tokens: int = 16  # the length of its answers
    include_correct: bool = False  # also train on comparisons of answers that were already right
    use_reference: bool = True  # show the reference answer in the reflection turn (false: the model checks alone)
    reflection_prompt: str = (
        "Compare your answer with the reference answer, {reference}. Say whether they differ, then give the corrected"
        " answer."
    )
    reflection_prompt_blind: str = "Check your answer. Say whether it is right, then give the corrected answer."
    keep_original: bool = True  # train on the original pairs too, not only on the comparisons
    max_questions: int = 0  # questions answered (0: all of the mix's training questions)


@dataclass
class PathsConfig:
    runs: str = "runs"
    data: str = "data"
    cache: str = "${paths.data}/.cache"  # encoded pairs, shared by every job of a sweep


@dataclass
class RMLabConfig:
    experiment: str = "default"
    stage: Stage = Stage.reward_model
    label: str = ""  # a name for this configuration in tables (an experiment's variants set it)
    # The sweep's grid point this run is ({axis: value}, axis names with "/" for "."): set by rmlab.launch.grid, logged
    # to wandb (what dashboards group by), never hashed (no stage reads it).
    sweep: dict[str, Any] = field(default_factory=dict)
    run: RunConfig = field(default_factory=RunConfig)
    paradigm: ParadigmConfig = field(default_factory=ParadigmConfig)
    head: HeadConfig = field(default_factory=HeadConfig)
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    scale: ScaleConfig = field(default_factory=ScaleConfig)
    data_mix: DataMixConfig = field(default_factory=DataMixConfig)
    datasets: dict[str, DatasetLocation] = field(default_factory=dict)  # where each dataset lives (conf/datasets)
    benchmarks: dict[str, BenchmarkLocation] = field(default_factory=dict)  # where each benchmark is (conf/benchmarks)
    ensemble: EnsembleConfig = field(default_factory=EnsembleConfig)
    rl: RLConfig = field(default_factory=RLConfig)
    selfcompare: SelfCompareConfig = field(default_factory=SelfCompareConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    launcher: LauncherConfig = field(default_factory=LauncherConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)
    # An experiment file's table spec: allowed here so the file composes, removed from every composed config (the
    # results stage reads it from the file; runs never carry it).
    table: Any = None


def register() -> None:
    ConfigStore.instance().store(name="rmlab_schema", node=RMLabConfig)
