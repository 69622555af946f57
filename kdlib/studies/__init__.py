"""Each step's own code: the teacher and the distilled student (train, results; steps 01-02), seed 000's
grid (grid; 03), every compression family side by side (compare/; 04), heterogeneous KD (hetero/; 05), SQuAD on
an edge budget (edge/; 06), the runs behind the findings over seeds (verdicts), the study's figures (plots) and
the papers' published numbers (papers). It imports the pipeline and the layers below it, never kdlib.report."""
