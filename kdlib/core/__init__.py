"""The core of KD: datasets (data), teachers and students (models, heads), what each kind of model outputs
(adaptors), the loss registry (losses), metrics (metrics; SQuAD's in squad), the Trainer and the teacher-output
cache (distill), and atomic file writes (io). It imports no other layer of kdlib."""
