"""Checks that README.md includes each snippet of this directory verbatim, in a fenced
block of its language (bindings/run.sh runs the snippets themselves)."""

import os
import sys

readme_path, snippets = sys.argv[1], sys.argv[2]
with open(readme_path, encoding="utf-8") as f:
    readme = f.read()
for name, fence in [("quickstart.py", "python"), ("quickstart.mjs", "js")]:
    with open(os.path.join(snippets, name), encoding="utf-8") as f:
        block = f"```{fence}\n{f.read()}```\n"
    if block not in readme:
        sys.exit(f"README.md does not include bindings/examples/{name} verbatim (```{fence} block)")
print("README.md includes both snippets verbatim")
