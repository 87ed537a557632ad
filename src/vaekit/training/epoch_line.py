"""The line ``vaekit train`` prints after each epoch, in nats per datapoint."""

from __future__ import annotations


def format_record(record: dict[str, float], epochs: int) -> str:
    """One human line per epoch, in nats per datapoint: the objective the optimiser minimised
    (``loss``), written as the sum it is (recon + KL weight × KL for a VAE), and beside it the
    unweighted negative ELBO (recon + KL)."""
    parts = [f"epoch {int(record['epoch']):>3}/{epochs}"]
    for split in ("train", "val"):
        if f"{split}/loss" in record:
            parts.append(f"{split} {_objective_text(record, split)}")
    if "val/bits_per_dim" in record:
        parts.append(f"val {record['val/bits_per_dim']:.4f} bits/dim")
    return " | ".join(parts)


def _objective_text(record: dict[str, float], split: str) -> str:
    def get(name: str) -> float | None:
        return record.get(f"{split}/{name}")

    loss, recon, kl, weight = get("loss"), get("recon"), get("kl"), get("kl_weight")
    text = f"objective {loss:.3f}"
    if recon is not None and kl is not None:
        trained = next((b for b in ("miwae", "ciwae", "piwae") if get(b) is not None), None)
        iwae = get("iwae")
        if trained is not None and iwae is not None:  # another bound (PIWAE: the encoder's)
            text += f" (-{trained} bound, kl weight {weight or 1.0:.4g}; -iwae {-iwae:.3f})"
        elif get("iwae") is not None:  # k > 1: minus the IWAE bound, not a sum of two terms
            text += f" (-iwae bound, kl weight {weight or 1.0:.4g})"
        elif weight is not None:
            text += f" = recon {recon:.3f} + {weight:.4g} × kl {kl:.3f}"
        elif get("weighted_kl") is not None:
            text += f" = recon {recon:.3f} + weighted kl {get('weighted_kl'):.3f}"
        else:  # rows written before the KL weight was logged
            text += f" (recon {recon:.3f}, kl {kl:.3f})"
        text += f"; -elbo {recon + kl:.3f}"
    elif recon is not None and get("adversarial") is not None:
        text += f" (recon {recon:.3f}, adversarial {get('adversarial'):.3f})"
    return text
