"""Typed, frozen experiment configs: TOML recipes plus ``--set key=value`` overrides.

The defaults are the default experiment (a VAE on the embedded digits), spelled out in
configs/digits.toml.

Unknown keys and ill-typed values are errors that name the valid choices. Configs are read at
the edge (the ``cli`` and ``build`` packages) and saved with every run as ``config.json``.
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from vaekit.config_parsing import apply_override, build_dataclass
from vaekit.config_ranges import NON_EMPTY, PROBABILITY_CORRUPTIONS, RANGES, show
from vaekit.errors import ConfigError


@dataclass(frozen=True)
class DataConfig:
    """Which data and how they are prepared (see ``vaekit.data.load_dataset``)."""

    name: str = "digits"
    """The dataset, a name in the dataset registry (``vaekit.data.DATASETS``)."""
    path: str | None = None
    """The file or folder to read for sources that need one (arrays, image-folder; optional for
    svhn and celeba)."""
    root: str | None = None
    """The dataset cache directory; none means ``$VAEKIT_DATA`` or else ``~/.cache/vaekit/data``."""
    image_size: int | None = None
    """Side in pixels that image sources (image-folder, celeba) are cropped square and resized to;
    none means 64."""
    channels: int | None = None
    """Colour channels of image sources: 1 converts to grey, 3 (or none) keeps RGB."""
    binarize: Literal["none", "dynamic", "static"] = "none"
    """Binarise pixels with P(1) = x: "static" draws every split once, "dynamic" redraws each
    training batch and draws validation and test once; needs data in [0, 1]."""
    val_size: float = 0.1
    """Points held out of training for validation: a fraction below 1, a count, or 0 to validate on
    the test split."""
    val_from: Literal["random", "tail"] = "random"
    """Which training points are held out: "random" (seeded by ``train.seed``) or "tail", the last
    ones, as in the IWAE paper."""
    limit: int | None = None
    """Keep only the first this many training and test points, for quick runs; none keeps all."""
    download: bool = True
    """Allow downloading a missing dataset into the cache."""
    skip_bad_files: bool = False
    """Leave unreadable image files out of an image folder instead of refusing the folder."""
    label_column: str | None = None
    """The column of a ``.csv`` file that holds labels (kept out of the features); none means
    unlabelled."""
    standardize: bool = False
    """Centre and scale every feature with the training split's mean and standard deviation;
    samples are mapped back to the data's units."""
    in_memory: bool | Literal["auto"] = "auto"
    """Image sources: true holds them in memory, false streams them from a cache on disk, "auto"
    streams when the images as float32 would take more than half of the available memory (or
    than the environment variable VAEKIT_IMAGE_MEMORY_BUDGET, a number of bytes, where set)."""


@dataclass(frozen=True)
class ModelConfig:
    """Model kind, networks, likelihood and the objective's variants."""

    kind: str = "vae"
    """The model: ae, vae, aae (deterministic codes) or aae-gaussian (Gaussian codes)."""
    latent_dim: int = 8
    """Dimension of the latent code z."""
    network: Literal["mlp", "conv"] = "mlp"
    """Encoder and decoder networks: "mlp" (any data) or "conv" (square images)."""
    hidden: tuple[int, ...] = (256, 128)
    """Hidden layer widths of the MLP encoder; the decoder uses them in reverse."""
    activation: str = "leaky_relu"
    """Activation function of the networks (and of the adversarial critic)."""
    conv_channels: int = 32
    """Channels of the first conv layer; each stride-2 stage doubles them."""
    batch_norm: bool = False
    """Batch normalisation in the conv networks (never on the encoder's first layer)."""
    likelihood: str = "bernoulli"
    """The decoder's p(x|z): bernoulli (data in [0, 1]), gaussian (fixed sigma) or
    gaussian-learned (a learned sigma per pixel)."""
    sigma: float = 0.1
    """The fixed standard deviation of the "gaussian" likelihood."""
    min_scale: float = 1e-3
    """The floor on the learned standard deviation of the "gaussian-learned" likelihood."""
    mixture_components: int = 5
    """Logistic components per value of the "discretized-logistic" likelihood."""
    output_bias: Literal["default", "marginal"] = "default"
    """Where the decoder's output-layer bias starts: default (PyTorch's initialisation) or
    marginal (p(x|z) starts at the training data's per-value marginal: the log-odds of the mean
    pixel for bernoulli, the mean and spread for the gaussian likelihoods; the IWAE code's
    start). A VampPrior can need it: otherwise its posteriors may collapse onto the prior in
    the first steps. vaekit train applies it when a run starts; in Python, call
    vaekit.init_output_bias before vaekit.fit."""
    prior: str = "standard-normal"
    """The prior p(z), a name in the prior registry: standard-normal, a learned Gaussian mixture,
    or vamp (the encoder at learned pseudo-inputs; Tomczak & Welling 2018)."""
    bound: Literal["iwae", "miwae", "ciwae", "piwae"] = "iwae"
    """The multi-sample bound a VAE trains (Rainforth et al. 2018): iwae (the ELBO at
    num_particles = 1), miwae (M groups of K), ciwae (the ELBO and IWAE mixed by ciwae_beta) or
    piwae (the encoder on MIWAE, the decoder on IWAE of all M·K samples)."""
    bound_groups: int = 1
    """M, the groups of num_particles samples of the miwae and piwae bounds."""
    ciwae_beta: float = 0.5
    """The weight c of the ELBO in the ciwae bound c · ELBO + (1 - c) · IWAE."""
    prior_components: int = 10
    """Components of the "mixture" prior, or pseudo-inputs of the "vamp" prior."""
    posterior: Literal["gaussian", "iaf"] = "gaussian"
    """The VAE's q(z|x): gaussian (diagonal), or iaf (the Gaussian followed by flow_steps inverse
    autoregressive flow steps that see the encoder's features; Kingma et al. 2016)."""
    flow_steps: int = 2
    """Steps of the "iaf" posterior, each a MADE as wide as the encoder's last hidden layer."""
    stochastic_layers: int = 1
    """Stochastic layers of a VAE: 1, or 2 (Burda et al. 2016: x -> hidden -> z1 of
    lower_latent_dim -> lower_hidden -> z2 of latent_dim, the prior p(z2) p(z1|z2) with z2
    standard normal; the code is [z1, z2])."""
    conditional: bool = False
    """The conditional model (Sohn et al. 2015): the dataset's class labels feed the encoder
    (joined to x) and the decoder (joined to z); samples are drawn per class
    (``vaekit sample --condition``)."""
    lower_latent_dim: int = 100
    """Dimension of z1, the stochastic layer next to the data, when stochastic_layers = 2."""
    lower_hidden: tuple[int, ...] = (100, 100)
    """Hidden widths between z1 and z2 (q(z2|z1) in this order, p(z1|z2) reversed) when
    stochastic_layers = 2."""
    beta: float = 1.0
    """Weight on the KL term (beta-VAE); 1 gives the ELBO."""
    num_particles: int = 1
    """Importance samples k per datapoint; k > 1 trains the IWAE bound."""
    analytic_kl: bool = True
    """Use the closed-form KL where torch knows it (k = 1 only), else a one-sample Monte-Carlo
    estimate."""
    gradient_estimator: Literal["reparam", "dreg"] = "reparam"
    """The encoder's gradient: "reparam" (the reparameterisation gradient) or "dreg" (doubly
    reparameterised, Tucker et al. 2019)."""
    corruption: str = "none"
    """Noise applied to the encoder input for a denoising model (the clean x is scored); none
    trains without."""
    corruption_level: float = 0.5
    """Strength of the corruption: the noise scale for gaussian, the probability per pixel for
    salt-and-pepper and masking."""
    adversarial_weight: float = 1.0
    """Adversarial autoencoders: weight of the adversarial term, in nats per datapoint; 0 trains a
    plain autoencoder."""
    discriminator_hidden: tuple[int, ...] = (256, 256)
    """Adversarial autoencoders: hidden layer widths of the critic of codes."""


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation and run-time settings of the one training loop."""

    epochs: int = 60
    """Passes over the training split."""
    batch_size: int = 64
    """Datapoints per training step (per process in a distributed run)."""
    lr: float = 2e-3
    """Adam's peak learning rate."""
    adam_betas: tuple[float, float] = (0.9, 0.999)
    """Adam's coefficients (beta1, beta2) of the running averages of the gradient and its square."""
    weight_decay: float = 0.0
    """Adam's L2 weight decay."""
    adam_eps: float = 1e-8
    """Adam's epsilon, added to the denominator for numerical stability."""
    schedule: Literal["constant", "cosine", "iwae-stages"] = "cosine"
    """Learning-rate schedule over the run: "constant", "cosine" (down to ``min_lr``) or
    "iwae-stages" (the IWAE paper's 8 stages, stage i at lr · 10^(-(i-1)/7)). The stages follow
    the fraction of the run's steps done, with lengths in proportion 1 : 3 : 9 : ... : 2187, so
    train.epochs = 3280 gives the paper's 1, 3, ..., 2187 epochs and another train.epochs scales
    every stage by epochs / 3280."""
    min_lr: float = 0.0
    """The learning rate the "cosine" schedule ends at."""
    warmup_epochs: float = 5.0
    """Epochs over which the KL weight rises linearly from 0 to 1 (KL warm-up); 0 means none."""
    grad_clip: float | None = None
    """Clip the gradient's norm to this value; none does not clip."""
    ema_decay: float | None = None
    """Keep an exponential moving average of the weights with this decay, used for validation and
    the saved model; none keeps none."""
    eval_batch_size: int = 1000
    """Datapoints per batch when validating."""
    seed: int = 0
    """Seed of every random draw of training: initial weights, validation split, data order."""
    device: str = "auto"
    """Where to train: "auto" (a CUDA GPU if one is visible, else the CPU), "cpu" or "cuda"."""
    deterministic: bool = False
    """Use deterministic kernels, so that runs with one seed are bitwise identical."""
    num_threads: int | None = None
    """Torch CPU threads; none chooses one thread for small models and one per core otherwise."""
    precision: Literal["float32", "bfloat16"] = "float32"
    """Precision of the training loss: "bfloat16" computes it under autocast (weights, gradients
    and Adam stay float32)."""
    compile: bool = False
    """Run the training step's networks (or hand-derived gradients) through torch.compile: slower
    start, faster long runs."""
    accelerate: Literal["auto", "off"] = "auto"
    """Speed-ups: "auto" takes the faster paths of ``vaekit.accel`` where the model allows them;
    "off" trains through autograd only."""
    checkpoint_every_steps: int | None = None
    """Also save a resumable checkpoint every this many steps; none saves at the end of each epoch
    only."""
    max_bad_steps: int = 20
    """Consecutive steps with a non-finite loss or gradient before rolling back to the last
    checkpoint."""
    max_rollbacks: int = 3
    """Rollbacks (each halving the learning rate) before training stops."""


@dataclass(frozen=True)
class Config:
    """A whole experiment: data, model and training."""

    name: str = "digits-vae"
    """The experiment's name; ``vaekit train`` writes to ``runs/<name>-<time>/`` unless given
    ``--out``."""
    data: DataConfig = field(default_factory=DataConfig)
    """The ``[data]`` table: which data and how they are prepared."""
    model: ModelConfig = field(default_factory=ModelConfig)
    """The ``[model]`` table: model kind, networks, likelihood and the objective's variants."""
    train: TrainConfig = field(default_factory=TrainConfig)
    """The ``[train]`` table: optimisation and run-time settings."""


def check_ranges(config: Config) -> None:
    """Raise ConfigError, naming the key, its value and what it allows, for the first setting
    out of its range (``RANGES``)."""
    tree = config_to_dict(config)
    for key, (test, allowed) in RANGES.items():
        section, name = key.split(".")
        value = tree[section][name]
        if value is None:
            continue
        if key in NON_EMPTY and not value:
            raise ConfigError(f"{key} must not be empty; give {allowed}, e.g. [256, 128]")
        items = value if isinstance(value, list) else [value]
        if not all(test(item) for item in items):
            raise ConfigError(f"{key} = {show(value)} is out of range: it must be {allowed}")
    model = config.model
    if model.corruption in PROBABILITY_CORRUPTIONS and not model.corruption_level <= 1:
        raise ConfigError(
            f"model.corruption_level = {model.corruption_level} is a probability for "
            f"{model.corruption!r} corruption: it must lie in [0, 1]"
        )


def train_config(options: dict[str, Any]) -> TrainConfig:
    """A validated TrainConfig from keyword settings (``vaekit.fit``'s options); unknown names,
    ill-typed values and values out of range raise ConfigError saying what is allowed."""
    config: TrainConfig = build_dataclass(TrainConfig, dict(options), "train.")
    check_ranges(Config(train=config))
    return config


def config_from_dict(tree: dict[str, Any], overrides: Sequence[str] = ()) -> Config:
    """A validated Config from nested plain values plus ``section.key=value`` overrides."""
    if not isinstance(tree, dict):
        raise ConfigError(f"a config is a table of sections, got {type(tree).__name__}")
    tree = json.loads(json.dumps(tree))  # deep copy of plain values
    for override in overrides:
        apply_override(tree, override)
    config: Config = build_dataclass(Config, tree, "")
    check_ranges(config)
    return config


def load_config(path: str | Path | None = None, overrides: Sequence[str] = ()) -> Config:
    """Read a TOML recipe (defaults when ``path`` is None) and apply overrides."""
    tree: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            what = "a folder, not a file" if path.is_dir() else "not found"
            raise ConfigError(f"config file {str(path)!r} is {what}; see the recipes in configs/")
        try:  # utf-8-sig: a byte-order mark, as some editors write, is not TOML
            tree = tomllib.loads(path.read_text(encoding="utf-8-sig"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
            raise ConfigError(f"{path} is not valid TOML: {error}") from None
    return config_from_dict(tree, overrides)


def config_to_dict(config: Config) -> dict[str, Any]:
    """Plain nested values (tuples as lists), ready for JSON."""
    tree: dict[str, Any] = json.loads(json.dumps(dataclasses.asdict(config)))
    return tree
