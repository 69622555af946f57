"""Compression beside distillation (seed 002's taxonomy): attention-head and magnitude pruning (pruning),
low-rank factorisation (factorize), cross-layer weight sharing (share), and FLOP counts (flops). It imports
kdlib.core only."""
