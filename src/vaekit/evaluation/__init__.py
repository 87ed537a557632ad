"""Evaluation: likelihoods, latent-space metrics, sample quality; a registry and a runner."""

from vaekit.evaluation.context import EvaluationContext, MetricResult, NotApplicable
from vaekit.evaluation.evaluator import METRICS, format_table, run_metrics
from vaekit.evaluation.extractor import ExtractorCache, FeatureExtractor, train_extractor
from vaekit.evaluation.features import Features, StandardisedFeatures, features_for
from vaekit.evaluation.latent import (
    active_units,
    gaussian_fit_kl,
    mmd_permutation_test,
    per_unit_kl,
    probe_accuracies,
)
from vaekit.evaluation.likelihood import elbo_terms, log_likelihood
from vaekit.evaluation.parzen import parzen, parzen_log_likelihood
from vaekit.evaluation.per_example import (
    PairedDifference,
    compare_evaluations,
    load_evaluation,
    paired_difference,
)
from vaekit.evaluation.sample_quality import (
    feature_scores,
    fid,
    frechet_distance,
    kid,
    precision_recall,
    sample_quality,
)

__all__ = [
    "METRICS",
    "EvaluationContext",
    "ExtractorCache",
    "FeatureExtractor",
    "Features",
    "MetricResult",
    "NotApplicable",
    "PairedDifference",
    "StandardisedFeatures",
    "active_units",
    "compare_evaluations",
    "elbo_terms",
    "feature_scores",
    "features_for",
    "fid",
    "format_table",
    "frechet_distance",
    "gaussian_fit_kl",
    "kid",
    "load_evaluation",
    "log_likelihood",
    "mmd_permutation_test",
    "paired_difference",
    "parzen",
    "parzen_log_likelihood",
    "per_unit_kl",
    "precision_recall",
    "probe_accuracies",
    "run_metrics",
    "sample_quality",
    "train_extractor",
]
