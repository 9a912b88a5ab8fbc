"""`python -m xrseg ...`: the same command line as the `xrseg` console script."""

from xrseg.cli import app

app(prog_name="xrseg")
