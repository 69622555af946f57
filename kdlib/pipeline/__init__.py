"""The pipeline: the parameter schema (config), the steps (steps), memoised units (memo), where results
land (paths), and the runner that executes the notebooks (runner). It imports kdlib.core, kdlib.inference and
kdlib.compress."""
