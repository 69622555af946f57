"""Course material for the notebooks: the ideas shown before a step uses them (`primer`), the lesson each
step ends with (`takeaways`), exercises with their checks (`exercises`; reference solutions in `solutions`,
kept out of the notebooks), the sandbox where a student tries other settings (`sandbox`) and the sliders of
05 (`widgets`). It imports studies, pipeline and core; nothing below imports it."""
