"""Step 06 (seed 004): SQuAD data and QA training (qa) and the step itself (step): teachers, students, scores,
benchmarks and figures. Imports as kdlib.studies does."""
