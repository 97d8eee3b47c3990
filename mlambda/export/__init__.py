"""Exports: a function's version turned into another platform's deployment, handler
unchanged. `project` (the `mlambda export aws` command: read mlambda, write the project),
`sam` (the SAM template), `package` (what the function needs at run time, as Lambda
wheels), `entry.py` (the Lambda entry point, written into the project), `prices`,
`volume.sh` and `README.template.md` (written into the project)."""
