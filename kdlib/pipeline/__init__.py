"""The pipeline: the parameter schema (config), the steps (steps), memoised units (memo), where results
land (paths), one run at a time per profile (lock), and the runner that executes the notebooks (runner). It imports kdlib.core, kdlib.inference and
kdlib.compress."""
