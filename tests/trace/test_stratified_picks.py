"""Stratified edge picks (``lumigrad.render._trace_edges.stratified_picks``): each pick has the stated
distribution, counts are within two of their expectation (jittered strata: an entry can share two), zero
weights are never drawn."""
import torch

from lumigrad.render._trace_edges import stratified_picks


def _weights():
    g = torch.Generator().manual_seed(3)
    w = torch.rand(50, generator=g, dtype=torch.float64) ** 3
    w[[0, 7, 8, 49]] = 0.0  # zero-length edges, first and last included
    return w


def test_counts_are_within_two_of_expectation_and_zero_weights_are_skipped():
    w = _weights()
    for seed in range(20):
        M = 37 + seed
        pick = stratified_picks(w, M, torch.Generator().manual_seed(seed))
        assert pick.shape == (M,) and pick.dtype == torch.int64
        assert bool((pick[1:] >= pick[:-1]).all())  # ascending
        counts = torch.bincount(pick, minlength=w.numel()).to(torch.float64)
        expected = M * w / w.sum()
        assert float((counts - expected).abs().max()) < 2.0
        assert abs(float((counts - expected).sum())) < 1e-9
        assert int(counts[w == 0].sum()) == 0


def test_each_pick_has_the_stated_distribution():
    # The i-th pick alone, over seeds, is distributed as w / sum(w) (not only the multiset): per-pick
    # estimators that divide by the pick's probability stay unbiased whichever pick they use.
    w = _weights()
    M, runs = 4, 20000
    g = torch.Generator().manual_seed(0)
    picks = torch.stack([stratified_picks(w, M, g) for _ in range(runs)])  # [runs, M]
    p = w / w.sum()
    # sum over picks of f(pick) / p(pick) / M estimates sum(f): an unbiased estimate whatever f is.
    f = w * torch.linspace(0.5, 2.0, w.numel(), dtype=torch.float64)  # an edge term: length x a smooth jump
    est = (f[picks] / p[picks]).mean(1)
    se = float(est.std()) / runs**0.5
    assert abs(float(est.mean()) - float(f.sum())) < 4 * se
    # Multinomial picks of the same estimate scatter more (the point of stratifying).
    mult = torch.multinomial(p.expand(runs, -1), M, replacement=True, generator=g)
    assert float(est.var()) < 0.5 * float((f[mult] / p[mult]).mean(1).var())
