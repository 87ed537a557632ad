"""Model family: the autoencoder contract and the registry of model kinds."""

from vaekit.models.aae import AAE, LatentDiscriminator
from vaekit.models.ae import AE
from vaekit.models.base import Autoencoder, Decoder, Encoder, Loss, Prior
from vaekit.models.conditional import Condition, ConditionalDecoder, ConditionalEncoder
from vaekit.models.corruption import CORRUPTIONS, Corruption
from vaekit.models.output_bias import data_moments, init_output_bias
from vaekit.models.parts import NetworkDecoder, TrunkEncoder
from vaekit.models.vae import VAE

# kind -> (class, encoder head from vaekit.distributions.POSTERIORS)
MODELS: dict[str, tuple[type[Autoencoder], str]] = {
    "ae": (AE, "delta"),
    "vae": (VAE, "gaussian"),
    "aae": (AAE, "delta"),
    "aae-gaussian": (AAE, "gaussian"),
}

__all__ = [
    "AAE",
    "AE",
    "CORRUPTIONS",
    "MODELS",
    "VAE",
    "Autoencoder",
    "Condition",
    "ConditionalDecoder",
    "ConditionalEncoder",
    "Corruption",
    "Decoder",
    "Encoder",
    "LatentDiscriminator",
    "Loss",
    "NetworkDecoder",
    "Prior",
    "TrunkEncoder",
    "data_moments",
    "init_output_bias",
]
