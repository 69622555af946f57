"""Inference: the one description of the machine (machine), the registry of routes (routes) and an adapter
module per runtime (runtimes/), the timing harness (timing), export to a deployable folder (export, artifact)
and the standalone SQuAD benchmark (bench). It imports kdlib.core only."""
