"""runtime.retain_freed_memory: freed temporaries stay mapped, so steps stop page-faulting."""

from __future__ import annotations

import platform
import subprocess
import sys
import textwrap

import pytest

# Eager importance sampling on the 784-400-20 model frees and re-asks ~3 MiB temporaries for every
# 1000-row chunk; prints the minor page faults per chunk once the estimator runs steadily.
_FAULTS_PER_CHUNK = textwrap.dedent(
    """
    import resource, sys, torch
    from vaekit.runtime import retain_freed_memory
    if sys.argv[1] == "retain":
        assert retain_freed_memory()
    from vaekit.build import build_model
    from vaekit.config import ModelConfig
    from vaekit.evaluation import log_likelihood
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = build_model(ModelConfig(latent_dim=20, hidden=(400,), activation="relu"), (1, 28, 28))
    x = torch.bernoulli(torch.full((100, 1, 28, 28), 0.2))
    log_likelihood(model.eval(), x, num_samples=30, batch_size=100)
    counts = []
    for _ in range(4):  # the quietest of four windows: other processes can cause a few faults
        start = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        log_likelihood(model, x, num_samples=100, batch_size=100)  # 10 chunks of 1000 rows
        counts.append((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - start) / 10)
    print(min(counts))
    """
)


def _faults_per_chunk(mode: str) -> float:
    done = subprocess.run(
        [sys.executable, "-c", _FAULTS_PER_CHUNK, mode],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return float(done.stdout.split()[-1])


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_retained_memory_stops_the_page_faults_of_each_chunk() -> None:
    default, retained = _faults_per_chunk("default"), _faults_per_chunk("retain")
    # A 3 MiB buffer is 768 pages: without the setting glibc gives such blocks back and faults
    # them in again; with it, the steady state faults (almost) never.
    assert default > 100
    assert retained < 10
