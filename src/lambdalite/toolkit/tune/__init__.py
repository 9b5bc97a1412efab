"""`lambdalite tune`: memory sizes (and variants) swept, cold and warm apart, cost against speed.

    sweep.py     the measurements: UpdateFunctionConfiguration, Invoke with the log tail, REPORT parsed
    analysis.py  per configuration: medians, cost per million requests at a cold-start share, the marks
    chart.py     the table (Markdown, JSON) and the chart (PNG and SVG; matplotlib, the `tune` extra)
    commands.py  the command

The same code runs against `lambdalite serve` (its control plane) and AWS.
"""

__all__: list[str] = []
