"""Step 04: the models and their measurements (models), the tables (tables), the figures (plots), and seed
001's KD-position table probed from the loss registry (kd_positions). Imports as kdlib.studies does."""
