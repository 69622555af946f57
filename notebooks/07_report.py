# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 07 · The report
#
# The study's readers open a PDF, not the code. This notebook assembles `reports/<profile>/report.pdf`, and
# the same report as `report.html`, from the files the notebooks before it wrote. Nothing is computed here:
# every number is read from a CSV or JSON file a step produced, and every caption names the notebook and the
# file. The only numbers typed in by hand are the papers' published ones, in their own attributed columns
# and sentences (`kdlib/report/findings.py`).
#
# The sections are declared once, in `kdlib/report/sections.py`. A step that has not run for this profile is
# reported as "not run" rather than skipped in silence, so the report can be built at any point of the study.
#
# The PDF needs only pip: Jinja2 templates (`kdlib/report/templates/`) render Typst source, which the `typst`
# wheel compiles. No browser, no TeX. The same context renders the HTML, so the two hold the same content,
# and two builds from the same results give the same bytes (no clock time in them).
#
# *The words of this notebook are explained in the [glossary](../docs/glossary.md).*

# %% tags=["parameters"]
# Parameters (papermill replaces this cell's values; see params/*.yaml)
params_file = "../params/quick.yaml"
# The sandbox: overrides merged into the profile and an experiment name; either one makes this notebook
# write under reports/sandbox/<experiment>/ only.
overrides = {}
experiment = None

# %%
from kdlib.pipeline.notebook import start, write_metrics

STEP, cfg, out = start("07_report", params_file, check_models=False, overrides=overrides,
                       experiment=experiment)  # the report loads no model

# %% [markdown]
# ## What has run
#
# The report reads every step before it. Those that have not run for this profile appear as "not run".

# %%
import pandas as pd

from kdlib.report import sections as report

pd.DataFrame([{"section": s["title"], "not run": ", ".join(s["not_run"]) or "–"}
              for s in report.collect_sections(out.parent)])

# %% [markdown]
# ## Findings
#
# Each claim of the papers is tested across random seeds. A verdict (holds / does not hold) needs at least five
# seeds; with fewer the finding says "cannot tell (n seeds)". Multi-seed results are read from
# `reports/<profile>/verdicts/<claim>.csv` (written by `kdstudy verdicts`), one row per seed (see `kdlib/report/findings.py` for the columns of each claim);
# without that file a finding shows this profile's single run.

# %%
from kdlib.report import render

pd.DataFrame(render.findings_rows(out.parent, out.parent / "verdicts", cfg))

# %% [markdown]
# ## Building the PDF and the HTML

# %%
built = render.build(cfg)
print(f"{built['pdf']}: {built['n_pages']} pages\n{built['html']}")

# %% [markdown]
# The student-initialisation figure is the report's own: which teacher layers each student copies,
# from `kdlib.core.models.select_teacher_layers`, for every depth below our teacher's and for DistilBERT.

# %%
from IPython.display import Image

Image(filename=str(out / "figures" / "student_init.png"))

# %%
metrics = {k: built[k] for k in ("n_pages", "sections_not_run", "findings_with_verdict")}
write_metrics(out, metrics, required=STEP.metrics)

# %%
from kdlib.teach import takeaways

takeaways.show(takeaways.report(metrics, built["pdf"]))
