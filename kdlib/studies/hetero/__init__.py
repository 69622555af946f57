"""Step 05 (seed 003): the document embeddings (embed), the dense teachers and students (dense), the transformer
student (transformer), the tables and verdict (tables) and the figures (plots). Imports as kdlib.studies does."""
