"""The library of the knowledge-distillation study, in layers; each imports only the layers below it:

    core        datasets, models and students, heads, adaptors, the loss registry, metrics (classification,
                SQuAD), the trainer and the teacher-output cache, atomic file writes
    inference   the machine description, the route registry and one module per runtime, the timing harness,
                export and the standalone benchmark                                   (imports core)
    compress    pruning, factorisation, weight sharing, FLOPs                         (imports core)
    pipeline    parameters, the steps, memoised units, the runner, where results land (imports the above)
    studies     each step's own code: training (01, 02), grid (03), compare (04), hetero (05), edge (06),
                verdicts, and the papers' published numbers                          (imports the above)
    report      findings, sections, the manifest, rendering                          (imports the above)
    cli         the `kdstudy` command                                                 (imports any)

tests/test_layers.py holds the order.
"""
from kdlib.core.allocator import reuse_freed_memory

# Every process of the study (notebook kernels, workers, torchrun ranks, the benchmark) imports kdlib first:
# from here on, its large tensors reuse freed memory (why: kdlib/core/allocator.py).
reuse_freed_memory()
