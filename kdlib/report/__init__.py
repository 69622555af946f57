"""The report: the findings and their verdicts (findings), the sections (sections), the run manifest
(manifest), and rendering to Typst/PDF and HTML (render, templates/). It may import every other layer; only the
command line imports it."""
